"""The man pages in man/: current with the CLI and the config models, rendered by man-db and
groff without a warning, and covering every command, group and config field."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.core import TyperGroup
from typer.main import get_command

from nebula.cli.app import app
from nebula.daemon.config import DaemonConfig
from nebula.kinds.schemas import SCHEMAS
from nebula.spec.schema import schema_of

ROOT = Path(__file__).resolve().parents[1]
MAN = ROOT / "man"
RENDER_ENV = {**os.environ, "MANWIDTH": "100", "LC_ALL": "C.UTF-8"}


def rendered(page: Path) -> str:
    """The page as `man -l` shows it; any warning of man-db or groff fails the test."""
    done = subprocess.run(
        ["man", "--warnings=all", "-l", str(page)],
        env=RENDER_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == "", f"{page.name}: {done.stderr}"
    return done.stdout


def test_man_pages_match_the_cli(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-docs"), str(tmp_path)], check=True)
    fresh = {p.name: p.read_text() for p in (tmp_path / "man").iterdir()}
    kept = {p.name: p.read_text() for p in MAN.iterdir()}
    assert fresh == kept, "man/ is out of date: run scripts/gen-docs"


@pytest.mark.parametrize("page", sorted(p.name for p in MAN.iterdir()))
def test_each_page_renders_without_warnings(page: str) -> None:
    done = subprocess.run(
        ["groff", "-man", "-k", "-Tutf8", "-ww", "-z", str(MAN / page)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == ""
    assert rendered(MAN / page).strip()


def test_pages_cover_every_command_and_group() -> None:
    root = get_command(app)
    assert isinstance(root, TyperGroup)
    main = rendered(MAN / "nebula.1")
    for name, command in root.commands.items():
        assert f"nebula {name}" in main
        if not isinstance(command, TyperGroup):
            continue
        page = rendered(MAN / f"nebula-{name}.1")
        assert f"nebula-{name}(1)" in main
        for sub in command.commands:
            assert f"nebula {name} {sub}" in page
    assert "--version" in main
    assert "NEBULA_DATABASE_URL" in main  # the environment the options read
    logs = main.split("nebula logs", 1)[1]
    assert "--follow" in logs and "INSTALLATION" in logs


def test_nebulad_page_has_its_options_and_settings() -> None:
    page = rendered(MAN / "nebulad.8")
    assert "--source" in page and "--prune-max" in page
    for field in DaemonConfig.model_fields:
        assert f"NEBULA_{field.upper()}" in page


def test_config_page_describes_every_kind_from_its_model() -> None:
    page = rendered(MAN / "nebula.yaml.5")
    for kind in SCHEMAS:
        schema = schema_of(kind)
        assert kind.files[0] in page
        for field in schema["properties"]:
            assert field in page
        for name in schema.get("$defs", {}):
            assert name in page
    # a field's type, default and description, e.g. nebula.yaml's `nodes` and a node's `gpu`
    assert "nodes (list of Node" in page
    assert "gpu (boolean, default: false)" in page
