"""`nebula validate`: check the config repo without touching anything."""

from __future__ import annotations

from pathlib import Path

from nebula.cli.options import Output, RepoDir
from nebula.cli.output import OutputFormat, console, handle_errors, print_json
from nebula.engine.session import load


def validate(repo: RepoDir = Path("."), output: Output = OutputFormat.table) -> None:
    """Load, validate and resolve every file of the config repo; errors name file:line."""
    with handle_errors(output):
        desired = load(repo, vault=False)
    names = [d.name for d in desired.installations]
    if output is OutputFormat.json:
        print_json({"ok": True, "installations": names})
        return
    console().print(f"[green]✓[/] {len(names)} installation{'s' * (len(names) != 1)} valid")
