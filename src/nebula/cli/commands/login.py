"""`nebula login URL` and `nebula logout`: a session with a daemon's TCP API.

Login trades a user's password for a 15-minute access token and a refresh token; both are kept
per daemon URL (see `nebula.cli.credentials`: the OS keyring, else a 0600 file), and every
command given `--daemon URL` (or NEBULA_DAEMON) then uses them, refreshing as needed.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
)

Url = Annotated[str, typer.Argument(help="The daemon's TCP API, e.g. https://node1:7733.")]


def login(
    url: Url,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="User name. Default: asked.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    output: Output = OutputFormat.table,
) -> None:
    """Log in to nebulad's TCP API; later commands with --daemon URL use the session."""
    import httpx

    from nebula.cli import credentials

    if not url.startswith(("http://", "https://")):
        abort(f"{url!r} is not a URL: give http(s)://HOST:PORT", EXIT_INVALID)
    name = user or typer.prompt("User")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    with handle_errors(output):
        try:
            response = httpx.post(
                f"{credentials.normalize(url)}/api/v1/auth/login",
                json={"user": name, "password": password},
                timeout=httpx.Timeout(30.0, connect=5.0),
            )
        except httpx.TransportError as exc:
            abort(f"no nebulad answers at {url}: {exc}")
        if response.status_code != 200:
            try:
                reason = str(response.json()["error"])
            except (ValueError, KeyError, TypeError):
                reason = f"HTTP {response.status_code}"
            wait = response.headers.get("retry-after")
            hint = f" (try again in {wait} s)" if wait else ""
            abort(f"login to {url} refused: {reason}{hint}", EXIT_FAILED)
        session = credentials.from_tokens(response.json())
        credentials.save(url, session)
        kept = credentials.where()
    if output is OutputFormat.json:
        print_json(
            {
                "ok": True,
                "url": credentials.normalize(url),
                "user": session.user,
                "role": session.role,
                "kept_in": kept,
            }
        )
        return
    console().print(f"Logged in to {url} as {session.user} ({session.role}).")
    err_console().print(f"The session is kept in {kept}; `nebula logout {url}` ends it.")


def logout(
    url: Annotated[
        str | None,
        typer.Argument(help="The daemon's URL. Default: NEBULA_DAEMON.", show_default=False),
    ] = None,
    output: Output = OutputFormat.table,
) -> None:
    """End the session with a daemon: the daemon revokes it, and it is forgotten here."""
    import os

    import httpx

    from nebula.cli import credentials

    url = url or os.environ.get("NEBULA_DAEMON")
    if not url:
        abort("give the daemon's URL: nebula logout URL", EXIT_INVALID)
    with handle_errors(output):
        session = credentials.load(url)
        if session is None:
            abort(f"not logged in to {url}", EXIT_FAILED)
        revoked = False
        try:
            response = httpx.post(
                f"{credentials.normalize(url)}/api/v1/auth/logout",
                json={"refresh_token": session.refresh_token},
                timeout=httpx.Timeout(30.0, connect=5.0),
            )
            revoked = response.status_code == 200 and bool(response.json().get("revoked"))
        except (httpx.TransportError, ValueError):
            pass
        credentials.forget(url)
    if output is OutputFormat.json:
        print_json({"ok": True, "url": credentials.normalize(url), "revoked": revoked})
        return
    console().print(f"Logged out of {url}.")
    if not revoked:
        err_console().print(
            "The daemon did not confirm it revoked the session (unreachable?); it was "
            "forgotten here, and ends by itself within 30 days."
        )
