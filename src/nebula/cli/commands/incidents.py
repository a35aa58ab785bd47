"""`nebula incidents list|show|ack|resolve`: the incidents nebulad's alerts opened, through its
API (see `nebula.cli.client` for how the daemon is found)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.options import Output
from nebula.cli.output import (
    OutputFormat,
    console,
    handle_errors,
    print_json,
    print_list,
    print_table,
)

app = typer.Typer(
    help="Incidents: what alerts opened, and what was done about them.\n\n"
    "Examples:\n\n"
    "  nebula incidents list --status open\n\n"
    "  nebula incidents show 3f2c…\n\n"
    '  nebula incidents resolve 3f2c… --resolution "disk replaced"',
    no_args_is_help=True,
)
IncidentId = Annotated[str, typer.Argument(help="The incident's id (see `nebula incidents list`).")]
STATUS_STYLE = {"open": "red", "acknowledged": "yellow", "resolved": "green"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


class Status(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


def styled(value: Any, styles: dict[str, str]) -> str:
    text = str(value)
    style = styles.get(text)
    return f"[{style}]{_escape(text)}[/]" if style else _escape(text)


@app.command("list")
def list_incidents(
    status: Annotated[
        Status | None, typer.Option("--status", "-s", help="Only incidents in this state.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 100,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """The newest incidents first: state, severity, what they are about."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.incidents(status.value if status else None, limit)
    print_list(
        output,
        found,
        ("id", "status", "severity", "service", "title", "opened", "re-opened"),
        (
            (
                str(i["id"]),
                styled(i["status"], STATUS_STYLE),
                styled(i["severity"], SEVERITY_STYLE),
                _escape(str(i["service_name"])),
                _escape(str(i["title"])),
                _when(i["created_at"], seconds=False),
                str(i["reopened"] or ""),
            )
            for i in found
        ),
        "No incidents" + (f" {status.value}." if status else "."),
    )


@app.command()
def show(
    incident_id: IncidentId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """One incident and its timeline: every alert, fold, silence, runbook step, notification
    and human action, oldest first."""
    with handle_errors(output), _client(socket, daemon) as client:
        incident = client.incident(incident_id)
    if output is OutputFormat.json:
        print_json(incident)
        return
    render(incident)
    timeline = incident.get("timeline") or []
    if not timeline:
        return
    console().print()
    print_table(
        ("at", "kind", "by", "what"),
        (
            (
                _when(e["at"]),
                _escape(str(e["kind"])),
                _escape(str(e["actor"] or "")),
                _escape(str(e["message"])),
            )
            for e in timeline
        ),
    )


def render(incident: dict[str, Any]) -> None:
    """An incident's head: title, state, severity, what it is about, who acted."""
    console().print(
        f"[bold]{_escape(str(incident['title']))}[/]  "
        f"{styled(incident['status'], STATUS_STYLE)}  "
        f"{styled(incident['severity'], SEVERITY_STYLE)}"
    )
    labels = " ".join(f"{k}={v}" for k, v in sorted((incident.get("labels") or {}).items()))
    rows = [
        ("id", str(incident["id"])),
        ("service", str(incident["service_name"])),
        ("labels", labels),
        ("opened", _when(incident["created_at"])),
        ("re-opened", f"{incident['reopened']} times" if incident.get("reopened") else ""),
        ("runbook", str(incident.get("runbook_id") or "")),
        ("escalated", "yes" if incident.get("escalated") else ""),
    ]
    if incident.get("acknowledged_at"):
        by = incident.get("acknowledged_by") or "?"
        rows.append(("acked", f"{_when(incident['acknowledged_at'])} by {by}"))
    if incident.get("resolved_at"):
        resolution = incident.get("resolution") or ""
        rows.append(("resolved", f"{_when(incident['resolved_at'])}: {resolution}"))
    for label, value in rows:
        if value:
            console().print(f"  {label:<10} ", end="")
            console().print(value, markup=False)


@app.command("ack")
def acknowledge(
    incident_id: IncidentId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Take an open incident on: it is marked acknowledged, with your name on its timeline."""
    with handle_errors(output), _client(socket, daemon) as client:
        incident = client.acknowledge_incident(incident_id)
    if output is OutputFormat.json:
        print_json(incident)
        return
    console().print(f"Acknowledged incident {incident_id}.")
    render(incident)


@app.command()
def resolve(
    incident_id: IncidentId,
    resolution: Annotated[
        str, typer.Option("--resolution", "-r", help="What fixed it, for the timeline.")
    ] = "",
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Resolve an incident by hand (it also resolves by itself once its alerts clear)."""
    with handle_errors(output), _client(socket, daemon) as client:
        incident = client.resolve_incident(incident_id, resolution)
    if output is OutputFormat.json:
        print_json(incident)
        return
    console().print(f"Resolved incident {incident_id}.")
    render(incident)
