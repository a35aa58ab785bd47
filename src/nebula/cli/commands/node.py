"""`nebula node add NAME --ssh user@host`: bootstrap a node over SSH (see
`nebula.engine.bootstrap`), with the operator's nebulad making its service token and showing
its first heartbeat."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client
from nebula.cli.options import DatabaseUrl, Output
from nebula.cli.output import EXIT_INVALID, OutputFormat, abort, console, handle_errors, print_json

app = typer.Typer(help="Add a node to the homelab over SSH.", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The node, as nebula.yaml's nodes: name it.")],
    ssh: Annotated[
        str, typer.Option("--ssh", help="Where to log in: user@host or user@host:port.")
    ],
    source: Annotated[
        str, typer.Option("--source", help="The config repo the node's nebulad follows.")
    ],
    branch: Annotated[str, typer.Option("--branch", help="Its branch.")] = "main",
    database_url: DatabaseUrl = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="The private key to log in with. Default: the ssh agent."),
    ] = None,
    known_hosts: Annotated[
        str, typer.Option("--known-hosts", help="Where the host's key must be.")
    ] = "~/.ssh/known_hosts",
    host_key: Annotated[
        str | None,
        typer.Option(
            "--host-key",
            help="The host key's SHA256:... fingerprint (ssh-keygen -lf on the host), "
            "accepted instead of known_hosts.",
        ),
    ] = None,
    wheel: Annotated[
        Path | None,
        typer.Option("--wheel", help="The Nebula wheel to install. Default: this Nebula's, built."),
    ] = None,
    root: Annotated[
        str, typer.Option("--root", help="Install under this folder of the host instead of /.")
    ] = "/",
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the first heartbeat.")
    ] = 120.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Make a host a node: check it (Docker, Python >= 3.11, systemd), install Nebula in a venv,
    write its settings and service token, start nebulad's systemd unit, wait for its first
    heartbeat. Any failure undoes what was done, or says what is left."""
    from nebula.engine.bootstrap import Cluster, NodeSetup, add_node, masked_url

    if not database_url or not database_url.startswith("postgresql"):
        abort(
            "--database-url (or NEBULA_DATABASE_URL): the cluster's PostgreSQL, as the node "
            "reaches it, e.g. postgresql+psycopg://nebula:PASSWORD@db.lan/nebula",
            EXIT_INVALID,
        )
    if host_key is not None and not host_key.startswith("SHA256:"):
        abort(f"--host-key {host_key!r}: give the SHA256:... fingerprint", EXIT_INVALID)
    setup = NodeSetup(name, source, branch, database_url, root)
    steps: list[str] = []

    def report(step: str) -> None:
        steps.append(step)
        if output is OutputFormat.table:
            console().print(f"  {step}", highlight=False, markup=False)

    with handle_errors(output), _client(socket, daemon) as client:
        cluster = Cluster(client.create_service_token, client.revoke_key, client.nodes)
        if output is OutputFormat.table:
            console().print(f"Adding node {name} ({ssh}; database {masked_url(database_url)}):")
        add_node(
            setup,
            ssh,
            cluster,
            report,
            key_file=str(key_file) if key_file else None,
            known_hosts=known_hosts,
            host_key=host_key,
            wheel=wheel,
            heartbeat_timeout=timeout,
        )
    if output is OutputFormat.json:
        print_json({"ok": True, "node": name, "steps": steps})
    else:
        console().print(f"Node {name} is up.")
