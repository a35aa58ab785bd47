"""Editor schemas: `nebula schema export` writes valid JSON Schemas that accept what Nebula
accepts (the example homelab, every built-in catalog package) and refuse typo'd keys; `nebula
init` wires them into the new repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from nebula.catalog import Catalog
from nebula.cli.app import app
from nebula.errors import ConfigError
from nebula.kinds.schemas import SCHEMAS
from nebula.paths import builtin_catalog_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "homelab"
OPS = ROOT / "examples" / "ops-assistant"
runner = CliRunner()

DOMAIN = """\
zone: example.com
provider: powerdns
account:
  api_url: http://127.0.0.1:8081
  server_id: localhost
  token: ${secret:PDNS_API_KEY}
ttl: 3600
records:
  - {name: www, type: A, value: 192.0.2.10}
  - {name: "@", type: TXT, value: ["v=spf1 -all", "hello"]}
"""


@pytest.fixture(scope="module")
def validators(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Draft202012Validator]:
    folder = tmp_path_factory.mktemp("schemas")
    result = runner.invoke(app, ["schema", "export", str(folder), "--output", "json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout)["schemas"]
    assert [s["kind"] for s in listed] == [
        "nebula",
        "installation",
        "domain",
        "package",
        "agent",
        "function",
        "project",
    ]
    out = {}
    for entry in listed:
        schema = json.loads(Path(entry["file"]).read_text())
        Draft202012Validator.check_schema(schema)  # a valid JSON Schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False  # the models forbid unknown keys
        assert schema["title"]
        out[entry["kind"]] = Draft202012Validator(schema)
    return out


def errors(validator: Draft202012Validator, text: str) -> list[str]:
    """Every message, including those of the alternatives of an `anyOf` (nullable fields)."""
    data: Any = yaml.safe_load(text)
    found: list[str] = []
    pending = list(validator.iter_errors(data))
    while pending:
        error = pending.pop(0)
        found.append(error.message)
        pending.extend(error.context or [])
    return found


def test_the_example_homelab_is_accepted(validators: dict[str, Draft202012Validator]) -> None:
    assert errors(validators["nebula"], (EXAMPLE / "nebula.yaml").read_text()) == []
    installations = sorted((EXAMPLE / "packages").glob("*.yaml"))
    assert installations
    for path in installations:
        assert errors(validators["installation"], path.read_text()) == [], path
    for path in sorted((EXAMPLE / "catalog").glob("*/*.yaml")):
        assert errors(validators["package"], path.read_text()) == [], path
    assert errors(validators["domain"], DOMAIN) == []


def test_the_ops_assistant_example_is_accepted(
    validators: dict[str, Draft202012Validator],
) -> None:
    assert errors(validators["nebula"], (OPS / "nebula.yaml").read_text()) == []
    assert errors(validators["agent"], (OPS / "agents" / "ops-assistant.yaml").read_text()) == []
    functions = sorted((OPS / "functions").glob("*.yaml"))
    assert len(functions) == 6
    for path in functions:
        assert errors(validators["function"], path.read_text()) == [], path
    http = (
        "name: page\ndescription: Send a page\nimplementation: https://hooks.example.com/page\n"
        "implementation_type: http\nparameters: {type: object, properties: {text: {type: string}}}\n"
        "timeout: 10s\nhttp: {method: POST, headers: {Authorization: 'Bearer ${secret:hook}'}}\n"
    )
    assert errors(validators["function"], http) == []


def test_every_builtin_catalog_package_is_accepted(
    validators: dict[str, Draft202012Validator],
) -> None:
    catalog = Catalog([builtin_catalog_dir()])
    checked = 0
    for name in catalog.names():
        for version in catalog.versions(name):
            try:
                entry = catalog.get(name, version)
            except ConfigError:
                continue  # `nebula catalog validate` reports those; an editor may too
            assert entry is not None
            text = (builtin_catalog_dir() / name / f"{version}.yaml").read_text()
            assert errors(validators["package"], text) == [], (name, version)
            checked += 1
    assert checked >= 17


def test_typod_keys_are_refused(validators: dict[str, Draft202012Validator]) -> None:
    web = "compose:\n  services:\n    web:\n      imagee: nginx\n"
    found = errors(validators["installation"], web)
    assert "Additional properties are not allowed ('imagee' was unexpected)" in found
    assert errors(validators["nebula"], "defautls: {parallelism: 4}\n") == [
        "Additional properties are not allowed ('defautls' was unexpected)"
    ]
    assert errors(validators["domain"], DOMAIN.replace("records:", "recrods:"))
    agent = (OPS / "agents" / "ops-assistant.yaml").read_text()
    assert "Additional properties are not allowed ('systemprompt' was unexpected)" in errors(
        validators["agent"], agent.replace("systemPrompt:", "systemprompt:")
    )
    assert errors(validators["agent"], agent + "toolChoice: always\n")
    package = (EXAMPLE / "catalog" / "static-site" / "1.0.0.yaml").read_text()
    assert errors(validators["package"], package + "helth_checks: []\n")


def test_yaml_scalars_nebula_reads_as_text_or_durations_are_accepted(
    validators: dict[str, Draft202012Validator],
) -> None:
    # YAML reads these as numbers; Nebula reads them as text or seconds, and so does the schema
    assert errors(validators["installation"], "package: wordpress\nversion: 6.4\n") == []
    assert errors(validators["nebula"], "defaults: {health_timeout: 90, stop_timeout: 5s}\n") == []
    assert errors(validators["nebula"], "defaults: {parallelism: many}\n")


def test_kinds_cover_every_file_kind_of_the_repo() -> None:
    files = [pattern for kind in SCHEMAS for pattern in kind.files]
    assert "nebula.yaml" in files and "packages/*.yaml" in files
    assert "domains/*.yaml" in files and "catalog/*/*.yaml" in files
    assert "agents/*.yaml" in files and "functions/*.yaml" in files
    assert "projects/*.yaml" in files


def test_the_project_hello_example_is_accepted(
    validators: dict[str, Draft202012Validator],
) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "project-hello"
    text = (example / "config" / "projects" / "hello.yaml").read_text()
    assert errors(validators["project"], text) == []
    assert errors(validators["project"], text + "dockerfle: Dockerfile\n")


def test_init_wires_the_schemas_into_the_editor(tmp_path: Path) -> None:
    repo = tmp_path / "lab"
    (repo / ".vscode").mkdir(parents=True)
    (repo / ".vscode" / "settings.json").write_text('{"editor.tabSize": 2}')
    result = runner.invoke(app, ["init", str(repo)])
    assert result.exit_code == 0, result.stdout + result.stderr
    settings = json.loads((repo / ".vscode" / "settings.json").read_text())
    assert settings["editor.tabSize"] == 2  # the user's own settings stay
    mapping = settings["yaml.schemas"]
    assert mapping[".nebula/schema/installation.schema.json"] == [
        "packages/*.yaml",
        "packages/*.yml",
    ]
    assert mapping[".nebula/schema/agent.schema.json"] == ["agents/*.yaml", "agents/*.yml"]
    for schema in mapping:
        assert (repo / schema).is_file(), schema
    # the modelines point at the schemas from each file's own folder
    for path in (repo / "nebula.yaml", repo / "packages" / "example.yaml.sample"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        assert (path.parent / first.split("=", 1)[1]).resolve().is_file()
    # and the nebula.yaml init writes passes its own schema
    schema = json.loads((repo / ".nebula" / "schema" / "nebula.schema.json").read_text())
    assert errors(Draft202012Validator(schema), (repo / "nebula.yaml").read_text()) == []


def test_init_leaves_settings_it_cannot_parse(tmp_path: Path) -> None:
    repo = tmp_path / "lab"
    (repo / ".vscode").mkdir(parents=True)
    commented = '// mine\n{"editor.tabSize": 2}\n'
    (repo / ".vscode" / "settings.json").write_text(commented)
    result = runner.invoke(app, ["init", str(repo)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "is not plain JSON; left as is" in result.stdout
    assert (repo / ".vscode" / "settings.json").read_text() == commented
    assert (repo / ".nebula" / "schema" / "nebula.schema.json").is_file()
