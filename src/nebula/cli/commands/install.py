"""`nebula install`, `nebula upgrade` and `nebula uninstall`: catalog packages, the GitOps way.

Each command edits the config repo (writes or deletes `packages/NAME.yaml`), checks that the
edited repo validates, commits with a message saying what changed, pushes when the repo has a
remote, and then follows the change to the end: through nebulad when one is running (it
applies the commit and reports the sync), else by applying here. `--dry-run` shows the plan
and touches nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli import complete
from nebula.cli.audit_trail import record, record_commit
from nebula.cli.commands.daemon import DaemonUrl, Socket
from nebula.cli.options import DatabaseUrl, DockerHost, Output
from nebula.cli.output import (
    EXIT_FAILED,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from nebula.engine.catalog_edits import NewInstallation, RepoEdit
    from nebula.spec.package import Variable
    from nebula.spec.repo import RepoSpec

Repo = Annotated[
    Path,
    typer.Option(
        "--repo",
        "-r",
        envvar="NEBULA_REPO",
        help="The config repo (a git work tree with nebula.yaml).",
        show_default=".",
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Show the plan; write, commit and apply nothing.")
]
NoWait = Annotated[
    bool,
    typer.Option("--no-wait", help="Commit (and push) only; the daemon applies it in its time."),
]
Timeout = Annotated[
    float, typer.Option("--timeout", help="How long to follow the sync, in seconds.")
]


def install(
    package: Annotated[
        str,
        typer.Argument(
            help="The catalog package, e.g. nextcloud.", autocompletion=complete.packages
        ),
    ],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="A value: KEY=VALUE (repeatable). A secret variable's value goes to the vault; "
            "the YAML gets a ${secret:NAME} reference.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", "-V", help="The version to pin. Default: the newest."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The installation's name. Default: the package's name."),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="The node it runs on (nebula.yaml `nodes`).",
            autocompletion=complete.nodes,
        ),
    ] = None,
    expose: Annotated[
        list[str] | None,
        typer.Option("--expose", help="Serve it at this hostname through the proxy (repeatable)."),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            help="Grant a power over the host the package needs, e.g. host_network or devices "
            "(repeatable; written as `allow:`). Without the grants it needs, install refuses, "
            "naming them.",
            show_default=False,
        ),
    ] = None,
    repo: Repo = Path("."),
    dry_run: DryRun = False,
    no_wait: NoWait = False,
    timeout: Timeout = 900.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Install a catalog package: write packages/NAME.yaml, commit, push, and follow it to healthy.

    What the package requires (e.g. a database) and the repo lacks is installed with it, first.
    Required values are asked for (or given with --set); secret ones go to the vault, and a
    secret left empty is generated. Examples:

      nebula install uptime-kuma --expose status.home.example.com

      nebula install nextcloud --set NEXTCLOUD_ADMIN_USER=admin --dry-run

      nebula install home-assistant --allow host_network --allow devices
    """
    from nebula.engine.catalog_edits import GrantError, install_edit, plan_install

    quiet = output is OutputFormat.json
    given = _parse_sets(sets or [])

    def make_edit(spec: RepoSpec) -> RepoEdit:
        try:
            added = plan_install(
                spec,
                package,
                name=name,
                version=version,
                values=given,
                node=node,
                expose=expose or [],
                allow=allow or [],
            )
        except GrantError as exc:
            flags = " ".join(f"--allow {grant}" for grant in exc.missing)
            abort(f"{exc}; add {flags} to grant them" if flags else str(exc))
        _check_given(added[-1], given)
        added = [_with_values(a, quiet, dry_run, database_url) for a in added]
        edit = install_edit(added)
        if not quiet:
            for item in added:
                why = f" (required by {item.required_by})" if item.required_by else ""
                granted = f", granted {', '.join(item.allow)}" if item.allow else ""
                err_console().print(
                    f"[green]+[/] {item.path}: {item.package.name} {item.package.version}"
                    f"{why}{granted}",
                    highlight=False,
                )
        return edit

    _carry_out(
        _Run(repo, dry_run, no_wait, timeout, socket, daemon, docker_host, database_url, output),
        make_edit,
    )


def upgrade(
    name: Annotated[
        str,
        typer.Argument(help="The installation to upgrade.", autocompletion=complete.installations),
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", help="The version. Default: the newest (within its channel)."),
    ] = None,
    repo: Repo = Path("."),
    dry_run: DryRun = False,
    no_wait: NoWait = False,
    timeout: Timeout = 900.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Pin an installation to a newer (or, with --to, any) catalog version, commit and follow.

    The plan shows which images change; the package's pre_upgrade and post_upgrade hooks run
    around the change. To roll back, `git revert` the commit: the plan shows the reverse.
    """
    from nebula.engine.catalog_edits import upgrade_edit

    def make_edit(spec: RepoSpec) -> RepoEdit:
        edit, current, new = upgrade_edit(spec, name, to)
        if output is not OutputFormat.json:
            err_console().print(f"{name}: {current} → {new}", highlight=False)
        return edit

    _carry_out(
        _Run(repo, dry_run, no_wait, timeout, socket, daemon, docker_host, database_url, output),
        make_edit,
    )


def uninstall(
    name: Annotated[
        str,
        typer.Argument(help="The installation to remove.", autocompletion=complete.installations),
    ],
    purge: Annotated[
        bool,
        typer.Option(
            "--purge", help="Also delete its volumes, once its containers are gone. Data is lost."
        ),
    ] = False,
    repo: Repo = Path("."),
    dry_run: DryRun = False,
    timeout: Timeout = 900.0,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Remove an installation: delete packages/NAME.yaml, commit, push, and follow it.

    Refused while other installations depend on it. Its volumes are kept (a later install
    finds its data again) unless --purge.
    """
    from nebula.engine.catalog_edits import uninstall_edit

    _carry_out(
        _Run(repo, dry_run, False, timeout, socket, daemon, docker_host, database_url, output),
        lambda spec: uninstall_edit(spec, name),
        purge=name if purge else None,
    )


@dataclass(frozen=True)
class _Run:
    """How a command carries out its edit: the options install, upgrade and uninstall share."""

    repo: Path
    dry_run: bool
    no_wait: bool
    timeout: float
    socket: Path | None
    daemon: str | None
    docker_host: str | None
    database_url: str | None
    output: OutputFormat

    @property
    def quiet(self) -> bool:
        return self.output is OutputFormat.json


def _carry_out(
    run: _Run, make_edit: Callable[[RepoSpec], RepoEdit], *, purge: str | None = None
) -> None:
    """Load the repo and make the edit; errors become messages and exit codes."""
    from nebula.spec.repo import load_repo

    with handle_errors(run.output):
        spec = load_repo(run.repo)
        _submit(run, spec.root, make_edit(spec), purge)


def _submit(run: _Run, root: Path, edit: RepoEdit, purge: str | None) -> None:
    """Check the edit, then show its plan (dry run) or commit, push and follow it."""
    from nebula.engine import configrepo

    quiet, docker_host = run.quiet, run.docker_host
    desired = edit.check(root)  # validation errors leave the repo untouched
    if run.dry_run:
        from nebula.cli.commands.plan import preview
        from nebula.cli.plan_view import plan_json, render_plan

        planned = preview(desired, run.database_url, docker_host, ["packages"])
        if quiet:
            print_json(
                {"dry_run": True, "message": edit.message, "granted": edit.granted}
                | plan_json(planned)
            )
        else:
            console().print(f"Would commit: {edit.message}", highlight=False)
            render_plan(planned)
        return
    if not configrepo.is_git_repo(root):
        abort(f"{root} is not a git work tree: `git init` it (nebula init does) and commit")
    sha = configrepo.commit(root, edit)
    record_commit(run.database_url, root, sha, edit)
    remote = configrepo.push(root)
    report: dict[str, Any] = {"message": edit.message, "commit": sha, "pushed_to": remote}
    if not quiet:
        pushed = f", pushed to {remote}" if remote else ""
        err_console().print(f"Committed {sha[:12]}: {edit.message}{pushed}", highlight=False)
    if run.no_wait:
        if quiet:
            print_json(report | {"ok": True})
        return
    ok = _follow(run, report)
    if ok and purge:
        report["purged_volumes"] = _purge(purge, desired, docker_host, quiet)
    if quiet:
        print_json(report | {"ok": ok})
    if not ok:
        raise typer.Exit(EXIT_FAILED)


def _follow(run: _Run, report: dict[str, Any]) -> bool:
    """Through nebulad when one answers; else apply here. True when it all went well."""
    from nebula.cli.client import DaemonClient, DaemonUnavailableError
    from nebula.cli.commands.daemon import render_sync, wait_for_sync

    try:
        with DaemonClient(run.socket, run.daemon) as client:
            client.status()
            record = wait_for_sync(client, run.timeout, run.quiet)
    except DaemonUnavailableError:
        if run.daemon:
            raise
        if not run.quiet:
            err_console().print("No nebulad is running: applying here.")
        return _apply_here(run, report)
    report["sync"] = record
    if not run.quiet:
        render_sync(record)
    return bool(record["status"] == "succeeded")


def _apply_here(run: _Run, report: dict[str, Any]) -> bool:
    """`nebula apply` of the repo; with --output json its answer goes into `report`."""
    import contextlib
    import io
    import json

    from nebula.cli.commands.plan import apply

    captured = io.StringIO()
    ok = True
    quiet = run.quiet
    with contextlib.redirect_stdout(captured) if quiet else contextlib.nullcontext():
        try:
            apply(
                repo=run.repo,
                yes=True,
                docker_host=run.docker_host,
                database_url=run.database_url,
                output=run.output,
            )
        except typer.Exit as exit_:
            ok = exit_.exit_code == 0
    if quiet:
        report["apply"] = json.loads(captured.getvalue())
    return ok


def _purge(name: str, desired: Any, docker_host: str | None, quiet: bool) -> list[str]:
    from nebula.engine.session import open_provider

    provider = open_provider(desired, docker_host)
    try:
        removed = provider.remove_volumes_of(name)
    finally:
        provider.close()
    if not quiet:
        for volume in removed:
            err_console().print(f"[red]-[/] volume {volume}", highlight=False)
    return removed


def _parse_sets(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            abort(f"--set {item.split('=')[0]!r}: give KEY=VALUE")
        values[key] = value
    return values


def _check_given(target: NewInstallation, given: dict[str, str]) -> None:
    declared = {v.name for v in target.package.variables}
    unknown = sorted(set(given) - declared)
    if unknown:
        abort(
            f"{target.package.name} has no variable {', '.join(unknown)} "
            f"(its variables: {', '.join(sorted(declared)) or 'none'})"
        )


def _with_values(
    item: NewInstallation, quiet: bool, dry_run: bool, database_url: str | None
) -> NewInstallation:
    """`item` with every missing required value asked for, and every secret value moved to the
    vault (the YAML gets a reference). A secret nobody gives is generated."""
    import dataclasses

    from nebula.engine.catalog_edits import move_secrets_out

    values = dict(item.values)
    for variable in item.missing():
        if not variable.secret:  # secrets: below
            values[variable.name] = _ask(item, variable, quiet)
    item, for_vault = move_secrets_out(
        dataclasses.replace(item, values=values), lambda v: _ask_secret(item, v, quiet)
    )
    if for_vault and not dry_run:
        from nebula.engine.session import open_store
        from nebula.secrets import open_vault

        with open_store(database_url) as store:
            vault = open_vault(store)
            created = vault.init()
            if created.created and not quiet:
                err_console().print(f"Created the vault's master key: {created.where}")
            for name, value in for_vault.items():
                info = vault.set(name, value)
                record(store, "secret.set", name, {"fingerprint": info.fingerprint})
    if not quiet:
        for name in for_vault:
            err_console().print(f"  {name}: stored in the vault", highlight=False)
    return item


def _ask(item: NewInstallation, variable: Variable, quiet: bool) -> str:
    about = f" ({variable.description})" if variable.description else ""
    if quiet or not sys.stdin.isatty():
        abort(
            f"{item.package.name} needs {variable.name}{about}: give it with "
            f"--set {variable.name}=VALUE"
        )
    return str(typer.prompt(f"{item.name}: {variable.name}{about}"))


def _ask_secret(item: NewInstallation, variable: Variable, quiet: bool) -> str | None:
    """A secret value from a hidden prompt; None (generate one) without a terminal or answer."""
    if quiet or not sys.stdin.isatty():
        return None
    about = f" ({variable.description})" if variable.description else ""
    answer = typer.prompt(
        f"{item.name}: {variable.name}{about} [empty: generate one]",
        default="",
        hide_input=True,
        show_default=False,
    )
    return str(answer) or None
