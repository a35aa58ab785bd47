"""Options shared by several commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.output import EXIT_INVALID, OutputFormat, abort

RepoDir = Annotated[
    Path,
    typer.Argument(help="The config repo (a folder with nebula.yaml).", show_default="."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="NEBULA_DATABASE_URL",
        help="State database: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB. "
        "Default: nebula.db in the user's data dir.",
        show_default=False,
    ),
]
DockerHost = Annotated[
    str | None,
    typer.Option(
        "--docker-host",
        envvar="NEBULA_DOCKER_HOST",
        help="Docker Engine URL. Default: docker.host in nebula.yaml, else DOCKER_HOST, "
        "else unix:///var/run/docker.sock.",
        show_default=False,
    ),
]
Output = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table for people, json for scripts.")
]


class _Global:
    """The global options' values for the command being run (set by the app's callback)."""

    context: str | None = None


def choose_context(name: str | None) -> None:
    """The global `--context` (or NEBULA_CONTEXT) of this command; None: not given."""
    _Global.context = name


def chosen_context() -> str | None:
    return _Global.context


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_since(text: str) -> datetime:
    """A `--since`: a duration ago (30m, 2h, 7d, 1d12h) or a time (UTC unless it says)."""
    text = text.strip()
    if _DURATION.fullmatch(text):
        seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        abort(
            f"--since {text!r} is neither a duration (30m, 2h, 7d, 1d12h) "
            "nor a time (2026-01-31, 2026-01-31T12:00)",
            EXIT_INVALID,
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
