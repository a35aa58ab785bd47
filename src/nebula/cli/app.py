"""The `nebula` (alias `nebulactl`) application. Commands live one per module in `commands/`."""

from __future__ import annotations

import typer

from nebula import __version__
from nebula.cli.commands import (
    audit,
    catalog,
    certs,
    daemon,
    daemon_run,
    dns,
    init,
    install,
    login,
    plan,
    schema,
    secrets,
    status,
    users,
    validate,
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
app.command()(init.init)
app.command()(validate.validate)
app.command()(plan.plan)
app.command()(plan.apply)
app.command()(status.status)
app.add_typer(catalog.app, name="catalog")
app.add_typer(schema.app, name="schema")
app.add_typer(secrets.app, name="secrets")
app.command()(install.install)
app.command()(install.upgrade)
app.command()(install.uninstall)
app.add_typer(daemon.sync_app, name="sync")
app.command()(daemon.suspend)
app.command()(daemon.resume)
app.command()(daemon.rollback)
app.command()(daemon.approve)
app.add_typer(daemon.hooks_app, name="hooks")
app.add_typer(daemon_run.app, name="daemon")
app.add_typer(users.user_app, name="user")
app.add_typer(users.apikey_app, name="apikey")
app.command()(login.login)
app.command()(login.logout)
app.add_typer(audit.app, name="audit")
app.add_typer(dns.app, name="dns")
app.add_typer(dns.domains_app, name="domains")
app.command()(certs.certs)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nebula {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GitOps for the homelab."""


def main() -> None:
    app()


def nebulad_main() -> None:
    """`nebulad`: the same as `nebula daemon run`."""
    daemon_run.nebulad()
