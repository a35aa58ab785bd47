"""`nebula nodes`: the homelab's nodes as nebulad sees them, through its API (see
`nebula.cli.client` for how the daemon is found)."""

from __future__ import annotations

from typing import Any

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.options import Output
from nebula.cli.output import OutputFormat, handle_errors, print_list

STATE_STYLE = {"up": "green", "down": "bold red", "unknown": "dim"}


def nodes(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """Each node of nebula.yaml: address, labels, its nebulad's version and last heartbeat,
    whether it is up (a heartbeat within 15 s) and leads the cluster-wide work, and its
    installations with how many run and how many fail."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.nodes()
    print_list(
        output,
        found,
        ("node", "address", "labels", "state", "version", "heartbeat", "installations", "health"),
        (_row(n) for n in found),
        "No nodes: nebula.yaml lists none, or nebulad has not loaded a commit yet.",
    )


def _row(node: dict[str, Any]) -> tuple[str, ...]:
    state = str(node["state"])
    style = STATE_STYLE.get(state, "")
    shown = f"[{style}]{state}[/]" if style else state
    if node["leader"]:
        shown += " [bold](leader)[/]"
    elif node["driven"]:
        shown = f"driven ({node['engine']})" if node["engine"] != "docker" else "driven"
    labels = ", ".join(f"{k}={v}" for k, v in sorted(node["labels"].items()))
    health = node["health"]
    failing = f", [red]{health['failing']} failing[/]" if health["failing"] else ""
    return (
        _escape(str(node["name"])),
        _escape(str(node["address"])),
        _escape(labels),
        shown,
        _escape(str(node["version"] or "")),
        _when(node["heartbeat_at"]) if node["heartbeat_at"] else "never",
        str(node["installations"]),
        f"{health['running']} running{failing}",
    )
