"""`nebula backup` and `nebula restore`: an installation's named volumes into and out of a
restic repository, by hand; the same work as the runbook and workflow actions of those names.

They read and write the volumes' folders, so they run on the Docker Engine's machine. The
repository's password is a secret of the vault, named with `--password-secret`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli import complete
from nebula.cli.options import DatabaseUrl, DockerHost, Output
from nebula.cli.output import OutputFormat, console, handle_errors, print_json, print_table

if TYPE_CHECKING:
    from nebula.engine.backup import Hold

Installation = Annotated[
    str,
    typer.Argument(
        help="The installation.", show_default=False, autocompletion=complete.installations
    ),
]
Repository = Annotated[
    str,
    typer.Option(
        "--repository",
        "-r",
        help="The restic repository: a folder, or s3:..., sftp:..., b2:..., rest:... "
        "(the backend's credentials come from the environment, as for restic).",
        show_default=False,
    ),
]
PasswordSecret = Annotated[
    str,
    typer.Option(
        "--password-secret",
        help="The vault secret holding the repository's password (nebula secrets set NAME).",
        show_default=False,
    ),
]
Volumes = Annotated[
    list[str] | None,
    typer.Option(
        "--volume",
        "-v",
        help="Only this named volume (repeat for more). Default: all the installation's.",
        show_default=False,
    ),
]


def backup(
    installation: Installation,
    repository: Repository,
    password_secret: PasswordSecret,
    volume: Volumes = None,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the installation during the backup.")
    ] = False,
    pause: Annotated[
        bool, typer.Option("--pause", help="Pause the installation during the backup.")
    ] = False,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="A tag for the snapshots (repeatable).")
    ] = None,
    keep_last: Annotated[int | None, typer.Option(min=1, help="Then keep only N.")] = None,
    keep_daily: Annotated[int | None, typer.Option(min=1, help="Keep N daily.")] = None,
    keep_weekly: Annotated[int | None, typer.Option(min=1, help="Keep N weekly.")] = None,
    keep_monthly: Annotated[int | None, typer.Option(min=1, help="Keep N monthly.")] = None,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Back up an installation's named volumes, one snapshot each; the repository is created
    on the first backup. With --stop or --pause the installation is stopped or paused meanwhile
    and always runs again afterwards. --keep-* then forgets older snapshots and prunes them."""
    from nebula.engine import backup as backups
    from nebula.engine.session import open_provider

    hold: Hold = "pause" if pause else stop
    kept = (keep_last, keep_daily, keep_weekly, keep_monthly)
    keep = backups.Retention(*kept) if any(k is not None for k in kept) else None
    with handle_errors(output, invalid=backups.BackupError):
        password = _password(password_secret, database_url)
        provider = open_provider(None, docker_host)
        try:
            done = backups.backup(
                provider,
                repository,
                password,
                installation,
                volumes=volume or (),
                hold=hold,
                tags=tag or (),
                keep=keep,
            )
        finally:
            provider.close()
    if output is OutputFormat.json:
        print_json({"ok": True, "snapshots": done.snapshots, "forgotten": done.forgotten})
    else:
        console().print(done.summary(), markup=False)


def restore(
    installation: Installation,
    repository: Repository,
    password_secret: PasswordSecret,
    snapshot: Annotated[
        str,
        typer.Option(help="A snapshot id (of one volume), from --list. Default: the latest."),
    ] = "latest",
    volume: Volumes = None,
    list_: Annotated[
        bool,
        typer.Option("--list", help="List the installation's snapshots; restore nothing."),
    ] = False,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Replace the contents of an installation's named volumes with their latest snapshots (or
    one volume's with --snapshot). The snapshots are fetched first, so an error changes
    nothing; then the installation is stopped, its volumes replaced, and it is started again."""
    from nebula.engine import backup as backups
    from nebula.engine.session import open_provider

    with handle_errors(output, invalid=backups.BackupError):
        password = _password(password_secret, database_url)
        if list_:
            found = backups.snapshots(repository, password, installation)
            rows = [(s.short_id, s.tag("volume"), s.time[:19], ", ".join(s.tags)) for s in found]
            if output is OutputFormat.json:
                print_json([{"id": s.id, "volume": s.tag("volume"), "time": s.time} for s in found])
            else:
                print_table(("snapshot", "volume", "time (UTC)", "tags"), rows)
            return
        provider = open_provider(None, docker_host)
        try:
            done = backups.restore(
                provider,
                repository,
                password,
                installation,
                snapshot=snapshot,
                volumes=volume or (),
            )
        finally:
            provider.close()
    if output is OutputFormat.json:
        print_json({"ok": True, "snapshots": done.snapshots})
    else:
        console().print(done.summary(), markup=False)


def _password(name: str, database_url: str | None) -> str:
    from nebula.engine.session import open_store
    from nebula.secrets.resolve import vault_secrets

    with open_store(database_url) as store:
        return vault_secrets(store)(name)
