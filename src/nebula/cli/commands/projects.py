"""`nebula projects list|show|deploy|logs|rollback|open`: the config repo's projects (the
user's own apps, built from git) through nebulad's API (see `nebula.cli.client` for how the
daemon is found). A deployment runs in nebulad; `deploy` and `rollback` follow it to its end
unless told not to wait, and exit 1 when it fails."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.commands.incidents import styled
from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_FAILED,
    OutputFormat,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    print_list,
    print_table,
)

if TYPE_CHECKING:
    from nebula.cli.client import DaemonClient

app = typer.Typer(
    help="Projects: your own apps, built from git and deployed behind Caddy.\n\n"
    "Examples:\n\n"
    "  nebula projects list\n\n"
    "  nebula projects show hello --output json\n\n"
    "  nebula projects deploy hello --environment staging\n\n"
    "  nebula projects logs hello\n\n"
    "  nebula projects rollback hello --to 1a2b3c4d\n\n"
    "  nebula projects open hello",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Argument(help="The project (see `nebula projects list`).")]
Environment = Annotated[
    str | None,
    typer.Option("--environment", "-e", help="The environment. Default: the project's first."),
]
Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the deployment to its end.")]
Timeout = Annotated[
    float, typer.Option("--timeout", help="With --wait: give up after this many seconds.")
]
FINAL = {"live": True, "failed": False}
_STYLE = {
    "live": "green",
    "failed": "red",
    "pending": "dim",
    "building": "cyan",
    "deploying": "cyan",
}
POLL = 0.5  # seconds between looks at a deployment being followed


@app.command("list")
def list_projects(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """The projects of the last synced commit: where their code is, each environment's
    hostname and latest deployment."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.projects()
    rows = [
        (
            _escape(p["name"]),
            _escape(p["git_url"] or f"config repo: {p['path']}"),
            _escape(env["name"]),
            _escape(env["host"] or ""),
            _latest(env.get("latest")),
        )
        for p in found
        for env in p["environments"]
    ]
    print_list(
        output,
        found,
        ("project", "code", "environment", "host", "latest deployment"),
        rows,
        "no projects: add projects/*.yaml to the config repo",
    )


@app.command()
def show(
    name: Name,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="Deployments to list.")
    ] = 10,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """A project: where its code is, its environments, its latest deployments."""
    with handle_errors(output), _client(socket, daemon) as client:
        project = client.project(name)
        deployments = client.project_deployments(name, limit=limit)
    if output is OutputFormat.json:
        print_json({**project, "deployments": deployments})
        return
    print_table(
        ("field", "value"),
        [
            ("name", _escape(project["name"])),
            ("file", _escape(project["file"])),
            ("code", _escape(project["git_url"] or f"config repo: {project['path']}")),
            ("dockerfile", _escape(project["dockerfile"] or "(detected)")),
            ("port", str(project["port"])),
        ],
    )
    console().print()
    print_table(
        ("environment", "branch", "host", "node"),
        [
            (
                _escape(e["name"]),
                _escape(e["branch"]),
                _escape(e["host"] or ""),
                _escape(e["node"] or ""),
            )
            for e in project["environments"]
        ],
    )
    console().print()
    _deployments(deployments)


@app.command()
def deploy(
    name: Name,
    environment: Environment = None,
    commit: Annotated[
        str | None,
        typer.Option("--commit", help="The commit to build. Default: the branch's head."),
    ] = None,
    wait: Wait = True,
    timeout: Timeout = 1800.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Build the project's branch (or --commit) and switch the environment to it once the new
    container is healthy; exit 1 when the build or the health check fails (what served before
    keeps serving)."""
    with handle_errors(output), _client(socket, daemon) as client:
        started = client.deploy_project(name, environment, commit)
        _follow(client, started, wait, timeout, output)


@app.command()
def rollback(
    name: Name,
    environment: Environment = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="A kept commit (or its prefix). Default: the one live before."),
    ] = None,
    wait: Wait = True,
    timeout: Timeout = 600.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Switch the environment back to a kept image, without building."""
    with handle_errors(output), _client(socket, daemon) as client:
        started = client.rollback_project(name, environment, to)
        _follow(client, started, wait, timeout, output)


@app.command()
def logs(
    name: Name,
    environment: Environment = None,
    deployment: Annotated[
        str | None,
        typer.Option("--deployment", "-d", help="A deployment's id. Default: the latest."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print the build's output as it comes.")
    ] = False,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """A deployment's build output (secrets masked)."""
    with handle_errors(output), _client(socket, daemon) as client:
        if deployment is None:
            latest = client.project_deployments(name, environment, limit=1)
            if not latest:
                where = f" in {environment}" if environment else ""
                fail(f"project {name} has no deployment{where} yet", output)
            deployment = str(latest[0]["id"])
        found = client.project_deployment(name, deployment)
        if output is OutputFormat.json:
            print_json(found)
            return
        shown = 0
        while True:
            text = str(found.get("logs") or "")
            console().out(text[shown:], end="", highlight=False)
            shown = len(text)
            if not follow or found["status"] in FINAL:
                break
            time.sleep(POLL)
            found = client.project_deployment(name, deployment)


@app.command("open")
def open_ide(
    name: Name,
    environment: Environment = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=1, max=65535, help="The IDE's host port. Default: 8443 or the next free."
        ),
    ] = None,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Open the project in the browser IDE: the catalog's code-server, installed as `ide-NAME`
    on a working copy of the project's repo and exposed at ide.HOST (the environment's
    hostname). Its password is in the vault; commit and push from the IDE's terminal."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.open_project(name, environment, port)
    if output is OutputFormat.json:
        print_json(found)
        return
    verb = "installed (a sync applies it)" if found["commit"] else "is installed"
    console().print(f"IDE {found['installation']} {verb}: {found['url']}", markup=False)
    console().print(f"  workspace: {found['workspace']}", markup=False)
    console().print(
        f"  password: `nebula secrets get {found['password_secret']} --reveal`", markup=False
    )


def _follow(
    client: DaemonClient,
    deployment: dict[str, Any],
    wait: bool,
    timeout: float,
    output: OutputFormat,
) -> None:
    """Report a started deployment; with `wait`, look at it until it ends (exit 1: failed)."""
    from nebula.cli.client import DaemonError

    quiet = output is OutputFormat.json
    if not quiet:
        err_console().print(
            f"Deployment {deployment['id']} of {deployment['project']} "
            f"({deployment['environment']}) started",
            markup=False,
        )
    deadline = time.monotonic() + timeout
    status = deployment["status"]
    while wait and deployment["status"] not in FINAL:
        if time.monotonic() > deadline:
            raise DaemonError(0, f"the deployment did not end within {timeout:g} s")
        time.sleep(POLL)
        deployment = client.project_deployment(deployment["project"], deployment["id"])
        if deployment["status"] != status and not quiet:
            status = deployment["status"]
            err_console().print(f"  {styled(status, _STYLE)}")
    if quiet:
        print_json(deployment)
    else:
        _deployments([deployment])
        if deployment.get("error"):
            err_console().print(f"error: {deployment['error']}", markup=False)
    if wait and not FINAL[deployment["status"]]:
        raise typer.Exit(EXIT_FAILED)


def _deployments(found: list[dict[str, Any]]) -> None:
    print_list(
        OutputFormat.table,
        found,
        ("id", "environment", "status", "commit", "summary", "created", "error"),
        (
            (
                str(d["id"]),
                _escape(d["environment"]),
                styled(d["status"], _STYLE),
                str(d["commit"] or "")[:12],
                _escape(d["summary"] or ""),
                _when(d["created_at"]),
                _escape(d["error"] or ""),
            )
            for d in found
        ),
        "no deployments yet: `nebula projects deploy NAME`",
    )


def _latest(deployment: dict[str, Any] | None) -> str:
    if not deployment:
        return ""
    return f"{styled(deployment['status'], _STYLE)} {str(deployment['commit'] or '')[:12]}"
