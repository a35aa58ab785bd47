"""`nebula init`: scaffold a config repo and put it under git."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.output import EXIT_INVALID, abort, console

NEBULA_YAML = """\
# Nebula config repo: the homelab, declared. `nebula plan` shows what would change,
# `nebula apply` makes it so. Every key is optional; these are the defaults.
# docker:
#   host: unix:///var/run/docker.sock   # or tcp://nas.lan:2375; unset: DOCKER_HOST
defaults:
  bind_address: 0.0.0.0     # host address for published ports that name none
  parallelism: 8            # installations applied at once
  health_timeout: 120s      # how long apply waits for health
  hook_timeout: 60s         # how long one hook may run
  stop_timeout: 10s         # grace period before a container is killed
  subnet_pool: 10.213.0.0/16  # installation networks get their subnets from here
  subnet_size: 26           # one /26 per network: room for 1024 installations
"""

EXAMPLE = """\
# An installation: rename this file to whoami.yaml (the file name is the installation's name).
#
# From the catalog (`nebula catalog list`):
#   package: uptime-kuma
#   values:
#     PORT: "3001"
#
# Or a custom app, in compose syntax:
#   compose:
#     services:
#       web:
#         image: traefik/whoami:v1.10
#         ports: ["${PORT:-8000}:80"]
#         restart: unless-stopped
#   health_checks:
#     - name: web
#       url: http://localhost:${PORT:-8000}/
"""


SCHEMA_DIR = ".nebula/schema"


def _editor_schemas(target: Path) -> None:
    """JSON Schemas in .nebula/schema/, and VS Code's YAML extension pointed at them (other
    editors using yaml-language-server read the modelines)."""
    import json

    from nebula.kinds.schemas import SCHEMAS
    from nebula.spec.schema import editor_mapping, export

    export(target / SCHEMA_DIR, SCHEMAS)
    settings_path = target / ".vscode" / "settings.json"
    settings: object = {}
    if settings_path.exists():
        try:
            settings = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            settings = None
    if not isinstance(settings, dict):
        console().print(
            f"[yellow]warning:[/] {settings_path} is not plain JSON; left as is (add "
            f'"yaml.schemas" mapping {SCHEMA_DIR}/*.schema.json yourself)'
        )
        return
    schemas = settings.get("yaml.schemas")
    settings["yaml.schemas"] = {
        **(schemas if isinstance(schemas, dict) else {}),
        **editor_mapping(SCHEMA_DIR, SCHEMAS),
    }
    settings_path.parent.mkdir(exist_ok=True)
    settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the config repo in.")] = Path(
        "."
    ),
) -> None:
    """Create a config repo: nebula.yaml, packages/, editor schemas, and a git repository.

    JSON Schemas go to .nebula/schema/ and .vscode/settings.json maps them to the repo's files,
    so editors complete and check the YAML as you type.
    """
    target = directory.resolve()
    if (target / "nebula.yaml").exists():
        abort(f"{target} already has a nebula.yaml; nothing changed", EXIT_INVALID)
    from nebula.spec.schema import modeline

    (target / "packages").mkdir(parents=True, exist_ok=True)
    (target / "nebula.yaml").write_text(modeline(SCHEMA_DIR, "nebula") + NEBULA_YAML)
    (target / "packages" / "example.yaml.sample").write_text(
        modeline(f"../{SCHEMA_DIR}", "installation") + EXAMPLE
    )
    _editor_schemas(target)
    if not (target / ".git").exists():
        try:
            subprocess.run(["git", "init", "-q", str(target)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            console().print(f"[yellow]warning:[/] git init failed ({exc}); the files are there")
    console().print(f"[green]✓[/] config repo created in {target}")
    console().print("  next: add packages/<name>.yaml, then `nebula plan` and `nebula apply`")
