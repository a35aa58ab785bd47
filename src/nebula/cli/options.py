"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.output import OutputFormat

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
