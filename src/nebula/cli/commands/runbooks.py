"""`nebula runbooks validate|list`: the runbooks of the config repo (its `runbooks/*.yml` and
the built-ins nebula.yaml enables)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nebula.cli.options import Output, RepoDir
from nebula.cli.output import OutputFormat, console, handle_errors, print_list

if TYPE_CHECKING:
    from nebula.kinds.runbooks.types import DesiredRunbook

app = typer.Typer(help="Runbooks: what Nebula does when something breaks.", no_args_is_help=True)


def _runbooks(repo: Path, output: OutputFormat) -> tuple[DesiredRunbook, ...]:
    from nebula.engine.session import load

    with handle_errors(output):
        return load(repo, vault=False).runbooks


def _trigger(runbook: DesiredRunbook) -> str:
    trigger = runbook.spec.trigger
    what = trigger.alert or trigger.event or trigger.schedule or ""
    return f"{trigger.type} {what}".strip()


def _row(runbook: DesiredRunbook) -> dict[str, Any]:
    return {
        "name": runbook.name,
        "trigger": _trigger(runbook),
        "condition": runbook.spec.trigger.condition,
        "steps": len(runbook.spec.steps),
        "builtin": runbook.record.builtin,
        "file": runbook.record.file,
    }


def _show(runbooks: tuple[DesiredRunbook, ...], output: OutputFormat) -> None:
    rows = [_row(r) for r in runbooks]
    print_list(
        output,
        rows,
        ("name", "trigger", "steps", "from"),
        (
            (r["name"], r["trigger"], str(r["steps"]), "built-in" if r["builtin"] else r["file"])
            for r in rows
        ),
        "no runbooks: add runbooks/*.yml, or enable built-ins in nebula.yaml's runbooks:",
    )


@app.command()
def validate(repo: RepoDir = Path("."), output: Output = OutputFormat.table) -> None:
    """Check every runbook (models, templates, conditions, channels, nodes); errors name
    file:line and exit 2."""
    runbooks = _runbooks(repo, output)
    if output is OutputFormat.table:
        count = len(runbooks)
        console().print(f"[green]✓[/] {count} runbook{'s' * (count != 1)} valid")
    _show(runbooks, output)


@app.command("list")
def list_runbooks(repo: RepoDir = Path("."), output: Output = OutputFormat.table) -> None:
    """The runbooks of the config repo, with their trigger and number of steps."""
    _show(_runbooks(repo, output), output)
