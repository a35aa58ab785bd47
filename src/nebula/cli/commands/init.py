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


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the config repo in.")] = Path(
        "."
    ),
) -> None:
    """Create a config repo: nebula.yaml, packages/, and a git repository around them."""
    target = directory.resolve()
    if (target / "nebula.yaml").exists():
        abort(f"{target} already has a nebula.yaml; nothing changed", EXIT_INVALID)
    (target / "packages").mkdir(parents=True, exist_ok=True)
    (target / "nebula.yaml").write_text(NEBULA_YAML)
    (target / "packages" / "example.yaml.sample").write_text(EXAMPLE)
    if not (target / ".git").exists():
        try:
            subprocess.run(["git", "init", "-q", str(target)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            console().print(f"[yellow]warning:[/] git init failed ({exc}); the files are there")
    console().print(f"[green]✓[/] config repo created in {target}")
    console().print("  next: add packages/<name>.yaml, then `nebula plan` and `nebula apply`")
