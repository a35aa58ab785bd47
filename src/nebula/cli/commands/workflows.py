"""`nebula workflows validate|list`: the workflows of the config repo (its `workflows/*.yaml`),
with what starts each and when its schedule fires next."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nebula.cli.options import Output, RepoDir
from nebula.cli.output import OutputFormat, console, handle_errors, print_list

if TYPE_CHECKING:
    from nebula.kinds.workflows.types import DesiredWorkflow

app = typer.Typer(
    help="Workflows: DAGs of steps run on a schedule, on an event or by hand.\n\n"
    "Examples:\n\n"
    "  nebula workflows validate\n\n"
    "  nebula workflows list --output json",
    no_args_is_help=True,
)


def _workflows(repo: Path, output: OutputFormat) -> tuple[DesiredWorkflow, ...]:
    from nebula.engine.session import load

    with handle_errors(output):
        return load(repo, vault=False).workflows


def _triggers(workflow: DesiredWorkflow) -> list[str]:
    on = workflow.spec.on
    found = [f"schedule {on.schedule}"] if on.schedule else []
    found += [f"event {on.event}"] if on.event else []
    return found + (["manual"] if on.manual else [])


def _row(workflow: DesiredWorkflow, now: datetime) -> dict[str, Any]:
    following = workflow.spec.on.next_time(now)
    return {
        "name": workflow.name,
        "triggers": _triggers(workflow),
        "next": following.isoformat() if following else None,
        "steps": len(workflow.spec.steps),
        "file": workflow.record.file,
    }


def _show(workflows: tuple[DesiredWorkflow, ...], output: OutputFormat) -> None:
    now = datetime.now(UTC)
    rows = [_row(w, now) for w in workflows]
    print_list(
        output,
        rows,
        ("name", "triggers", "next run (UTC)", "steps"),
        ((r["name"], ", ".join(r["triggers"]), _minute(r["next"]), str(r["steps"])) for r in rows),
        "no workflows: add workflows/*.yaml to the config repo",
    )


def _minute(when: str | None) -> str:
    return "" if when is None else datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M")


@app.command()
def validate(repo: RepoDir = Path("."), output: Output = OutputFormat.table) -> None:
    """Check every workflow (models, the DAG of needs, params, templates, conditions, channels,
    nodes); errors name file:line and exit 2."""
    workflows = _workflows(repo, output)
    if output is OutputFormat.table:
        count = len(workflows)
        console().print(f"[green]✓[/] {count} workflow{'s' * (count != 1)} valid")
    _show(workflows, output)


@app.command("list")
def list_workflows(repo: RepoDir = Path("."), output: Output = OutputFormat.table) -> None:
    """The workflows of the config repo: what starts each, its next scheduled run, its steps."""
    _show(_workflows(repo, output), output)
