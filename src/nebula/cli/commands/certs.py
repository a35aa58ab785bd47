"""`nebula certs`: the certificates of exposed hostnames, as Caddy serves them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli.options import DatabaseUrl, Output, RepoDir
from nebula.cli.output import OutputFormat, console, err_console, handle_errors, print_json
from nebula.engine.session import load, open_store

if TYPE_CHECKING:
    from nebula.kinds.routes.certificates import CertificateState

_STYLE = {"active": "green", "pending": "yellow", "expired": "red"}


def certs(
    repo: RepoDir = Path("."),
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for certificates still being issued.", min=0),
    ] = 0.0,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """List each exposed hostname's certificate: issuer, status, expiry.

    Each certificate is read from Caddy's HTTPS listener as a client gets it (`pending`: none
    served yet). Each zone's worst status and earliest expiry are recorded in the state
    database (domains.ssl_status, ssl_expires_at). A certificate within 14 days of its expiry
    (a quarter of its lifetime for short-lived ones) is reported as a warning.
    """
    with handle_errors(output):
        from nebula.kinds.routes.check import check_certificates, record_certificates

        desired = load(repo)
        states = check_certificates(desired, wait=wait)
        if desired.repo.domains:
            store = open_store(database_url)
            try:
                record_certificates(store, desired, states)
            finally:
                store.close()
    if output is OutputFormat.json:
        print_json({"certificates": [s.to_dict() for s in states]})
        return
    _render(states)


def _render(states: list[CertificateState]) -> None:
    if not states:
        console().print("No exposed hostnames.")
        return
    from rich.table import Table

    now = datetime.now(UTC)
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("hostname", overflow="fold")
    table.add_column("installation", overflow="fold")
    table.add_column("issuer", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    for state in states:
        expires = "-"
        if state.expires_at is not None:
            expires = f"{state.expires_at:%Y-%m-%d %H:%M} ({_left(state.expires_at - now)})"
        style = _STYLE[state.status]
        table.add_row(
            state.host,
            state.installation,
            state.issuer or "-",
            f"[{style}]{state.status}[/]",
            expires,
        )
    console().print(table)
    for state in states:
        if state.expiring and state.expires_at is not None:
            err_console().print(
                f"[bold yellow]warning:[/] the certificate of {state.host} "
                f"{'expired' if state.status == 'expired' else 'expires'} "
                f"{state.expires_at:%Y-%m-%d %H:%M} UTC; is Caddy able to renew it?",
                highlight=False,
            )


def _left(delta: timedelta) -> str:
    if delta.total_seconds() <= 0:
        return "expired"
    if delta.days >= 1:
        return f"in {delta.days} days"
    return f"in {int(delta.total_seconds() // 3600)} h"
