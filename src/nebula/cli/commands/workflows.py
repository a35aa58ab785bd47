"""`nebula workflows validate|list`: the workflows of the config repo (its `workflows/*.yaml`),
with what starts each and when its schedule fires next; `run|runs|show|cancel`: their runs
through nebulad's API (see `nebula.cli.client` for how the daemon is found)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.commands.incidents import styled
from nebula.cli.options import Output, RepoDir
from nebula.cli.output import (
    OutputFormat,
    console,
    handle_errors,
    print_json,
    print_list,
    print_table,
)

if TYPE_CHECKING:
    from nebula.kinds.workflows.types import DesiredWorkflow

app = typer.Typer(
    help="Workflows: DAGs of steps run on a schedule, on an event or by hand.\n\n"
    "Examples:\n\n"
    "  nebula workflows validate\n\n"
    "  nebula workflows list --output json\n\n"
    "  nebula workflows run nightly-backup\n\n"
    "  nebula workflows runs --workflow nightly-backup\n\n"
    "  nebula workflows show 5d0c…",
    no_args_is_help=True,
)
RunId = Annotated[str, typer.Argument(help="A run (see `nebula workflows runs`).")]
_RUN_STYLE = {
    "succeeded": "green",
    "ok": "green",
    "failed": "red",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "skipped": "dim",
    "running": "cyan",
}


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


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="The workflow (see `nebula workflows list`).")],
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Start a run of a workflow of the last synced commit now (it must say `manual: true`);
    exit 1 when it is skipped because a run is going."""
    with handle_errors(output), _client(socket, daemon) as client:
        run_id = client.run_workflow(name)
    if output is OutputFormat.json:
        print_json({"workflow": name, "run": run_id})
    else:
        console().print(
            f"Workflow {name} started: run {run_id} (`nebula workflows show {run_id}`)",
            markup=False,
        )


@app.command()
def runs(
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only the runs of this workflow.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 50,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """The latest workflow runs, newest first: how each started, its steps done, how it ended."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.workflow_runs(workflow, limit)
    print_list(
        output,
        found,
        ("id", "workflow", "status", "steps", "started by", "started", "error"),
        (
            (
                str(r["id"]),
                _escape(str(r["runbook_name"])),
                styled(r["status"], _RUN_STYLE),
                f"{r['steps_completed']}/{r['steps_total']}",
                _escape(_started_by(r["trigger"])),
                _when(r["started_at"], seconds=False),
                _escape(str(r["error"] or "")),
            )
            for r in found
        ),
        "No workflow has run yet.",
    )


@app.command()
def show(
    run_id: RunId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """One run: how it started and ended, and each finished step with its status, tries, the
    end of its output and its error."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.workflow_run(run_id)
    if output is OutputFormat.json:
        print_json(found)
        return
    ended = f", ended {_when(found['completed_at'])}" if found["completed_at"] else ""
    console().print(
        f"[bold]{_escape(str(found['runbook_name']))}[/] run {_escape(run_id)}  "
        f"{styled(found['status'], _RUN_STYLE)}  "
        f"{found['steps_completed']}/{found['steps_total']} steps\n"
        f"started by {_escape(_started_by(found['trigger']))} {_when(found['started_at'])}{ended}"
    )
    if found["error"]:
        console().print(f"error: {found['error']}", markup=False)
    steps: dict[str, Any] = found["step_states"]
    if steps:
        console().print()
        print_table(
            ("step", "status", "tries", "output", "error"),
            (
                (
                    _escape(key),
                    styled(state["status"], _RUN_STYLE),
                    str(state.get("attempts", 0)),
                    _escape(_tail(str(state.get("output", "")))),
                    _escape(str(state.get("error", ""))),
                )
                for key, state in steps.items()
            ),
        )


@app.command()
def cancel(
    run_id: RunId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Stop a running run: its steps are told to stop, and it ends cancelled."""
    with handle_errors(output), _client(socket, daemon) as client:
        client.cancel_workflow_run(run_id)
    if output is OutputFormat.json:
        print_json({"ok": True, "run": run_id})
    else:
        console().print(
            f"Cancelling run {run_id}: it ends once its steps stop "
            f"(`nebula workflows show {run_id}`).",
            markup=False,
        )


def _started_by(trigger: dict[str, Any]) -> str:
    if "manual" in trigger:
        return f"hand ({trigger['manual']})"
    if "event" in trigger:
        return f"event {trigger['event'].get('kind', '')}"
    return "schedule" if "schedule" in trigger else ""


def _tail(output: str, width: int = 60) -> str:
    """The last line of a step's output, its end when longer than `width`."""
    last = output.rstrip().rpartition("\n")[2]
    return last if len(last) <= width else "…" + last[-(width - 1) :]
