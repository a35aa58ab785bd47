"""The `nebula` (alias `nebulactl`) application. Commands live one per module in `commands/`."""

from __future__ import annotations

import os

import typer

from nebula import __version__
from nebula.cli import options
from nebula.cli.commands import (
    agents,
    alerts,
    audit,
    backup,
    catalog,
    certs,
    completion,
    context,
    daemon,
    daemon_run,
    dns,
    incidents,
    init,
    install,
    login,
    logs,
    node,
    nodes,
    plan,
    projects,
    runbooks,
    schema,
    secrets,
    status,
    tui,
    users,
    validate,
    workflows,
)

app = typer.Typer(
    name="nebula",
    help="GitOps for the homelab: declare apps in a git repo, Nebula makes Docker match it.\n\n"
    "Exit codes: 0 ok, 1 a change failed, 2 invalid config or command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# The help lists the commands, then the groups, each in this order.
for command in (
    init.init,
    validate.validate,
    plan.plan,
    plan.apply,
    status.status,
    logs.logs,
    backup.backup,
    backup.restore,
    install.install,
    install.upgrade,
    install.uninstall,
    daemon.suspend,
    daemon.resume,
    daemon.rollback,
    daemon.approve,
    login.login,
    login.logout,
    certs.certs,
    nodes.nodes,
    tui.tui,
):
    app.command()(command)
for name, group in {
    "catalog": catalog.app,
    "schema": schema.app,
    "secrets": secrets.app,
    "sync": daemon.sync_app,
    "hooks": daemon.hooks_app,
    "daemon": daemon_run.app,
    "user": users.user_app,
    "apikey": users.apikey_app,
    "audit": audit.app,
    "dns": dns.app,
    "domains": dns.domains_app,
    "runbooks": runbooks.app,
    "workflows": workflows.app,
    "projects": projects.app,
    "incidents": incidents.app,
    "alert": alerts.alert_app,
    "silence": alerts.silence_app,
    "agents": agents.app,
    "functions": agents.functions_app,
    "ai": agents.ai_app,
    "completion": completion.app,
    "context": context.app,
    "node": node.app,
}.items():
    app.add_typer(group, name=name)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nebula {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    context: str | None = typer.Option(
        None,
        "--context",
        envvar="NEBULA_CONTEXT",
        help="The context (`nebula context list`) whose daemon commands speak to.",
        show_default=False,
    ),
) -> None:
    """GitOps for the homelab."""
    options.choose_context(context)


def main() -> None:
    if completion.COMPLETE_VAR in os.environ:  # a shell asks for candidates (typer's protocol)
        from typer._completion_classes import completion_init

        completion_init()
    app()


def nebulad_main() -> None:
    """`nebulad`: the same as `nebula daemon run`."""
    daemon_run.nebulad()
