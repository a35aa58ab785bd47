"""`nebula daemon run` (and `nebulad`): the long-running agent of a node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nebula.cli.output import EXIT_INVALID, abort, handle_errors

app = typer.Typer(help="Run the daemon that keeps this node matching its config repo.")


@app.command("run")
def run(
    source: Annotated[
        str | None,
        typer.Option(
            help="git URL or local path of the config repo (NEBULA_SOURCE).", show_default=False
        ),
    ] = None,
    branch: Annotated[str | None, typer.Option(help="Branch to follow. [default: main]")] = None,
    subfolder: Annotated[
        str | None, typer.Option(help="Folder of the repo holding nebula.yaml.")
    ] = None,
    watch: Annotated[
        bool | None, typer.Option("--watch", help="Follow a local working folder live (no git).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="State, clone and socket live here.")
    ] = None,
    poll_interval: Annotated[
        str | None, typer.Option(help="How often to fetch. [default: 60s]")
    ] = None,
    drift_interval: Annotated[
        str | None, typer.Option(help="How often to re-check Docker. [default: 30s]")
    ] = None,
    prune_max: Annotated[
        int | None,
        typer.Option(
            help="Removals of one kind (installations, routes, record sets) a commit may make "
            "before it is held. [default: half of what Nebula manages]"
        ),
    ] = None,
    tcp_listen: Annotated[str | None, typer.Option(help="HOST:PORT for the TCP API.")] = None,
    ui: Annotated[
        bool | None,
        typer.Option("--ui", help="Serve the web dashboard under /ui on the TCP API (NEBULA_UI)."),
    ] = None,
    docker_host: Annotated[str | None, typer.Option(help="Docker Engine URL.")] = None,
    database_url: Annotated[str | None, typer.Option(help="State database URL.")] = None,
    node: Annotated[
        str | None,
        typer.Option(help="The node of nebula.yaml this is (NEBULA_NODE). [default: the first]"),
    ] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json", help="Log as JSON lines.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file with any of these settings.")
    ] = None,
) -> None:
    """Follow a config repo and keep this node matching it, until SIGTERM.

    Settings come from --config, then NEBULA_<NAME> environment variables (NEBULA_TOKEN and
    NEBULA_WEBHOOK_SECRET only there or in the file: never on the command line), then flags.
    """
    from pydantic import ValidationError

    from nebula.daemon.config import load_config
    from nebula.daemon.main import run as run_daemon

    flags = {
        "source": source,
        "branch": branch,
        "subfolder": subfolder,
        "watch": watch,
        "data_dir": data_dir,
        "poll_interval": poll_interval,
        "drift_interval": drift_interval,
        "prune_max": prune_max,
        "tcp_listen": tcp_listen,
        "ui": ui,
        "docker_host": docker_host,
        "database_url": database_url,
        "node": node,
        "log_json": log_json,
    }
    with handle_errors():
        try:
            settings = load_config(config, flags)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                for e in exc.errors()
            )
            abort(f"invalid daemon settings: {problems}", EXIT_INVALID)
        run_daemon(settings)


def nebulad() -> None:
    typer.run(run)
