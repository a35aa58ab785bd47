"""`nebula runbooks validate|list`: the runbooks of the config repo (its `runbooks/*.yml` and
the built-ins nebula.yaml enables); `run|history|approve|reject`: running them through nebulad's
API (see `nebula.cli.client` for how the daemon is found)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli.commands.alerts import parse_pairs
from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.options import Output, RepoDir
from nebula.cli.output import (
    EXIT_FAILED,
    OutputFormat,
    console,
    handle_errors,
    print_json,
    print_list,
    print_table,
)

if TYPE_CHECKING:
    from nebula.kinds.runbooks.types import DesiredRunbook

app = typer.Typer(
    help="Runbooks: what Nebula does when something breaks.\n\n"
    "Examples:\n\n"
    "  nebula runbooks validate\n\n"
    "  nebula runbooks run restart-unhealthy-service --label installation=blog "
    "--label service=web --dry-run\n\n"
    "  nebula runbooks history --runbook restart-unhealthy-service\n\n"
    "  nebula runbooks approve 5d0c…",
    no_args_is_help=True,
)
_WAITING = " for a person: `nebula runbooks approve|reject {id}` answers it"
ExecutionId = Annotated[
    str, typer.Argument(help="The run waiting for approval (see `nebula runbooks history`).")
]
_RUN_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "rejected": "red",
    "interrupted": "yellow",
    "waiting": "yellow",
    "running": "cyan",
}


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


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="The runbook (see `nebula runbooks list`).")],
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="KEY=VALUE naming what it is about: installation, service, container, node; "
            "repeat it.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the steps it would take, and run none of them."),
    ] = False,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Run a runbook of the last synced commit now, to its end (exit 1 when it fails)."""
    labels = parse_pairs(label, "--label")
    with handle_errors(output), _client(socket, daemon) as client:
        answer = client.run_runbook(name, labels, dry_run)
    if output is OutputFormat.json:
        print_json(answer)
    elif dry_run:
        console().print(f"{name} would take these steps (dry run: none ran):", markup=False)
        print_table(
            ("#", "step", "action", "runs"),
            (
                (
                    str(number),
                    _escape(str(step["name"])),
                    _escape(str(step["action"])),
                    "yes" if step["would_run"] else "[dim]no: its condition is false[/]",
                )
                for number, step in enumerate(answer["steps"], 1)
            ),
        )
    else:
        status = str(answer["status"])
        error = f": {answer['error']}" if answer.get("error") else ""
        console().print(
            f"Runbook {_escape(name)} [{_RUN_STYLE.get(status, 'white')}]{status}[/]"
            + _escape(error)
            + (_WAITING.format(id=answer.get("execution", "ID")) if status == "waiting" else "")
            + f" (run {answer.get('execution', '?')})"
        )
    if not dry_run and answer.get("status") in ("failed", "interrupted"):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def history(
    runbook: Annotated[
        str | None, typer.Option("--runbook", "-r", help="Only the runs of this runbook.")
    ] = None,
    incident: Annotated[
        str | None, typer.Option("--incident", "-i", help="Only the runs for this incident.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 50,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """The latest runs of runbooks, newest first, with their steps done and how they ended."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.executions(runbook, incident, limit)
    print_list(
        output,
        found,
        ("id", "runbook", "status", "steps", "incident", "started", "error"),
        (
            (
                str(e["id"]),
                _escape(str(e["runbook_name"])),
                f"[{_RUN_STYLE.get(e['status'], 'white')}]{e['status']}[/]",
                f"{e['steps_completed']}/{e['steps_total']}",
                str(e["incident_id"] or ""),
                _when(e["started_at"], seconds=False),
                _escape(str(e["error"] or "")),
            )
            for e in found
        ),
        "No runbook has run yet.",
    )


@app.command()
def approve(
    execution_id: ExecutionId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Approve the step a run waits on (`requires_approval: true`): the run goes on."""
    _decide(execution_id, True, socket, daemon, output)


@app.command()
def reject(
    execution_id: ExecutionId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Reject the step a run waits on: the run ends, rejected."""
    _decide(execution_id, False, socket, daemon, output)


def _decide(
    execution_id: str, approved: bool, socket: Path | None, daemon: str | None, output: OutputFormat
) -> None:
    with handle_errors(output), _client(socket, daemon) as client:
        execution = client.decide(execution_id, approved)
    if output is OutputFormat.json:
        print_json(execution)
    elif approved:
        console().print(f"Approved: run {execution_id} goes on.", markup=False)
    else:
        console().print(f"Rejected: run {execution_id} ends.", markup=False)
