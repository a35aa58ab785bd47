"""`nebula logs`: an installation's container logs, like `docker compose logs`.

It reads the Docker Engine directly, so it works on the node with or without nebulad.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli import complete
from nebula.cli.options import DockerHost, Output, parse_since
from nebula.cli.output import EXIT_INVALID, OutputFormat, abort, console, handle_errors
from nebula.engine.session import open_provider

if TYPE_CHECKING:
    from nebula.engine.logs import ServiceLine

# one colour a service, in the order of their names (as compose does, per container)
_COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow")


def logs(
    installation: Annotated[
        str,
        typer.Argument(
            help="The installation.", show_default=False, autocompletion=complete.installations
        ),
    ],
    service: Annotated[
        str | None, typer.Argument(help="Only this service.", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    tail: Annotated[
        str,
        typer.Option(
            "--tail",
            "-n",
            metavar="N|all",
            help="Lines to show from the end of each service's log: a number, or all.",
        ),
    ] = "100",
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only lines since a duration ago (30m, 2h, 7d) or a time "
            "(2026-01-31 or 2026-01-31T12:00, UTC unless it says otherwise).",
            show_default=False,
        ),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Show when each line was written.")
    ] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours.")] = False,
    docker_host: DockerHost = None,
    output: Output = OutputFormat.table,
) -> None:
    """Show the logs of an installation's services, merged, each line after its service's name.
    `--output json` prints one object a line: service, container, stream, time, message."""
    from nebula.engine import logs as engine_logs

    lines = _tail(tail)
    start = parse_since(since).timestamp() if since is not None else None
    with handle_errors(output, invalid=engine_logs.UnknownTargetError):
        provider = open_provider(None, docker_host)
        try:
            chosen = engine_logs.containers(provider, installation, service)
            services = sorted({c.service for c in chosen})
            show = _printer(services, output, timestamps=timestamps, colour=not no_color)
            if not follow:
                for entry in engine_logs.read(provider, chosen, tail=lines, since=start):
                    show(entry)
                return
            try:
                for entry in engine_logs.follow(provider, chosen, tail=lines, since=start):
                    show(entry)
            except KeyboardInterrupt:
                pass  # Ctrl-C is how following ends
        finally:
            provider.close()


def _tail(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        abort(f"--tail {text!r}: give a number of lines, or all", EXIT_INVALID)
    return int(text)


def _printer(
    services: Iterable[str], output: OutputFormat, *, timestamps: bool, colour: bool
) -> Callable[[ServiceLine], None]:
    """What prints one line: a JSON object, or the line after its service's padded name."""
    from rich.text import Text

    if output is OutputFormat.json:

        def as_json(entry: ServiceLine) -> None:
            sys.stdout.write(json.dumps(entry.to_dict()) + "\n")
            sys.stdout.flush()

        return as_json
    names = list(services)
    width = max(map(len, names))
    styles = {name: _COLOURS[i % len(_COLOURS)] if colour else "" for i, name in enumerate(names)}

    def as_text(entry: ServiceLine) -> None:
        prefix = f"{entry.service:<{width}} | "
        stamp = f"{entry.line.time} " if timestamps else ""
        console().print(Text.assemble((prefix, styles[entry.service]), stamp, entry.line.message))

    return as_text
