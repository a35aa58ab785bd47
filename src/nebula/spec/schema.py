"""JSON Schemas of every config-repo kind, for editors (`nebula schema export`, `nebula init`).

Each schema is generated from the pydantic model Nebula itself validates with, so an editor's
completion and checks agree with `nebula validate`: unknown keys are refused
(`additionalProperties: false`), and fields that YAML may write as numbers (`version: 6.4`,
`interval: 30`) accept them. Checks across fields or files (a package *or* inline compose,
variables used but not declared, port clashes) stay with `nebula validate`.

Adding a kind is one line in `KINDS`; the models of kinds that live in `kinds/` (agents,
functions) are added by `nebula.kinds.schemas.SCHEMAS`, which the commands write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nebula.spec.config import NebulaConfig
from nebula.spec.domain import Domain
from nebula.spec.installation import Installation
from nebula.spec.package import Package

DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class SchemaKind:
    """One kind of config-repo file: its schema's name, model, and the files it applies to."""

    name: str
    model: type[BaseModel]
    files: tuple[str, ...]
    title: str

    @property
    def filename(self) -> str:
        return f"{self.name}.schema.json"


KINDS: tuple[SchemaKind, ...] = (
    SchemaKind("nebula", NebulaConfig, ("nebula.yaml",), "nebula.yaml: Docker, defaults, nodes"),
    SchemaKind(
        "installation",
        Installation,
        ("packages/*.yaml", "packages/*.yml"),
        "packages/*.yaml: one installation, of a catalog package or an inline compose app",
    ),
    SchemaKind(
        "domain", Domain, ("domains/*.yaml", "domains/*.yml"), "domains/*.yaml: one DNS zone"
    ),
    SchemaKind(
        "package",
        Package,
        ("catalog/*/*.yaml", "catalog/*/*.yml"),
        "catalog/<name>/<version>.yaml: one version of a catalog package",
    ),
)


def schema_of(kind: SchemaKind) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one kind."""
    body = kind.model.model_json_schema(mode="validation")
    return {"$schema": DIALECT, **body, "title": kind.title}


def export(directory: Path, kinds: Sequence[SchemaKind]) -> list[Path]:
    """Write `<kind>.schema.json` for each of `kinds` into `directory`; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        path = directory / kind.filename
        path.write_text(json.dumps(schema_of(kind), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def editor_mapping(schema_dir: str, kinds: Sequence[SchemaKind]) -> dict[str, list[str]]:
    """The `yaml.schemas` setting of VS Code's YAML extension (yaml-language-server): schema
    file → the repo globs it applies to; `schema_dir` is relative to the repo root."""
    return {f"{schema_dir}/{kind.filename}": list(kind.files) for kind in kinds}


def modeline(schema_dir: str, kind_name: str) -> str:
    """The first line that points yaml-language-server at a kind's schema, from the file's
    folder (`schema_dir` relative to it)."""
    kind = next(k for k in KINDS if k.name == kind_name)
    return f"# yaml-language-server: $schema={schema_dir}/{kind.filename}\n"
