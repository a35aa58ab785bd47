"""`nebula plan` and `nebula apply`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nebula.cli.audit_trail import record_apply
from nebula.cli.options import DatabaseUrl, DockerHost, Output, RepoDir
from nebula.cli.output import (
    EXIT_FAILED,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
)
from nebula.cli.session import load, open_provider, open_store, remember_noop, replay_noop

if TYPE_CHECKING:
    from nebula.engine.reconcile import Desired
    from nebula.kinds.packages.apply import ApplyResult
    from nebula.kinds.packages.types import Observed
    from nebula.kinds.routes.desired import RouteChange
    from nebula.plan import Plan
    from nebula.providers.docker import DockerProvider
    from nebula.store import Store

_STYLE = {"create": "green", "update": "yellow", "delete": "red", "noop": "dim"}
_SIGN = {"create": "+", "update": "~", "delete": "-", "noop": " "}


def plan(
    repo: RepoDir = Path("."),
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
    show_unchanged: Annotated[
        bool, typer.Option("--show-unchanged", help="List resources that stay as they are.")
    ] = False,
) -> None:
    """Show what apply would change, and why. Changes nothing."""
    with handle_errors(output):
        replayed = None if show_unchanged else replay_noop(repo, docker_host)
        if replayed is not None:
            if output is OutputFormat.json:
                print_json(replayed)
            else:
                _no_changes(replayed["summary"])
            return
        from nebula.engine.reconcile import plan_against

        desired = load(repo, database_url)
        provider = open_provider(desired, docker_host)
        try:
            snapshot = plan_against(desired, provider)
        finally:
            provider.close()
        proxy, proxy_error = _preview_proxy(desired, snapshot.observed)
        if not proxy and proxy_error is None:
            remember_noop(repo, snapshot)
    if output is OutputFormat.json:
        data = snapshot.plan.to_dict()
        if proxy or proxy_error:  # absent when the proxy has nothing to do, as in a replay
            data["proxy"] = {"changes": [c.to_dict() for c in proxy], "error": proxy_error}
        print_json(data)
        return
    render_plan(snapshot.plan, show_unchanged)
    _render_proxy(proxy, proxy_error)


def _preview_proxy(desired: Desired, observed: Observed) -> tuple[list[RouteChange], str | None]:
    """The proxy changes apply would make; a Caddy that cannot be read is a warning here."""
    from nebula.errors import NebulaError
    from nebula.kinds.routes.apply import preview_proxy

    try:
        result = preview_proxy(desired, observed)
    except NebulaError as exc:
        return [], str(exc)
    return (list(result.changes) if result else []), None


def _render_proxy(changes: list[RouteChange], error: str | None) -> None:
    for change in changes:
        style = _STYLE[change.action.value]
        console().print(
            f"[{style}]{_SIGN[change.action.value]} {change.action.value}[/] proxy "
            f"{change.id}: {change.reason}",
            highlight=False,
        )
    if error:
        err_console().print("[bold yellow]warning:[/] ", end="")
        err_console().print(f"proxy changes unknown: {error}", markup=False)


def _no_changes(counts: dict[str, int]) -> None:
    from nebula.plan import summarize

    console().print(f"[green]No changes.[/] {summarize(counts)}")


def render_plan(the_plan: Plan, show_unchanged: bool = False) -> None:
    from rich.table import Table

    shown = the_plan.changes if show_unchanged else the_plan.pending
    if not shown:
        console().print(f"[green]No changes.[/] {the_plan.summary()}")
        return
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("", "installation", "kind", "name", "reason"):
        table.add_column(column, overflow="fold")
    for change in shown:
        style = _STYLE[change.action.value]
        table.add_row(
            f"[{style}]{_SIGN[change.action.value]} {change.action.value}[/]",
            change.installation,
            change.kind.value,
            change.name,
            change.reason,
        )
    console().print(table)
    console().print(f"\nPlan: {the_plan.summary()}")


def apply(
    repo: RepoDir = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting.")] = False,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Make Docker match the config repo: plan, then carry out the plan.

    Installations are applied in parallel; one that fails is reported with its cause and does
    not stop the others. Containers that would be deleted are confirmed first unless --yes.
    Exit code 1 when any installation failed.
    """
    quiet = output is OutputFormat.json

    def progress(installation: str, message: str) -> None:
        if not quiet:
            err_console().print(f"[cyan]{installation}[/] {message}", highlight=False)

    with handle_errors(output):
        replayed = replay_noop(repo, docker_host)
        if replayed is not None:
            if quiet:
                print_json({"ok": True, "summary": replayed["summary"], "installations": []})
            else:
                _no_changes(replayed["summary"])
            return
        store = open_store(database_url)
        try:
            # Deletions are confirmed with the lock released (a prompt never stalls nebulad or
            # another apply), then planned again under it: deletions not confirmed are asked
            # about again, never carried out.
            agreed: set[tuple[str, str]] | None = None if yes else set()
            shown: Plan | None = None
            while True:
                outcome = _apply_locked(
                    repo, docker_host, database_url, store, agreed, shown, quiet, progress
                )
                if outcome.applied:
                    break
                if shown is not None:
                    err_console().print("[bold yellow]The plan changed since it was confirmed:[/]")
                if not quiet:
                    render_plan(outcome.plan)
                _confirm_deletions(outcome.plan)
                agreed, shown = _deletions(outcome.plan), outcome.plan
        finally:
            store.close()
    result, proxy_error = outcome.result, outcome.proxy_error
    if result is None:
        summary = outcome.plan.counts()
        if quiet:
            print_json({"ok": True, "summary": summary, "installations": []})
        else:
            _no_changes(summary)
        return
    if quiet:
        print_json(_result_json(result) | {"proxy_error": proxy_error})
    else:
        _render_result(result)
        if proxy_error:
            err_console().print("[bold red]error:[/] ", end="")
            err_console().print(proxy_error, markup=False)
    if not result.ok or proxy_error:
        raise typer.Exit(EXIT_FAILED)


@dataclass(frozen=True)
class _Outcome:
    plan: Plan
    applied: bool  # False: the plan deletes containers not confirmed; nothing was done
    result: ApplyResult | None = None  # None: nothing to change (or not applied)
    proxy_error: str | None = None


def _apply_locked(
    repo: Path,
    docker_host: str | None,
    database_url: str | None,
    store: Store,
    agreed: set[tuple[str, str]] | None,
    shown: Plan | None,
    quiet: bool,
    progress: Callable[[str, str], None],
) -> _Outcome:
    """Under the store's apply lock: load the repo (an apply that waited sees what the one before
    it did), plan, and carry out the plan and the proxy step, unless it deletes containers that
    are not in `agreed` (None: any may go). `shown` is the plan already shown."""
    from nebula.engine.reconcile import plan_against
    from nebula.kinds.packages.apply import apply_plan, settle  # the store and its ORM: only now

    with store.apply_lock("nebula apply", lambda message: progress("*", message)):
        desired = load(repo, database_url)
        provider = open_provider(desired, docker_host)
        try:
            snapshot = plan_against(desired, provider)
            plan = snapshot.plan
            if agreed is not None and not _deletions(plan) <= agreed:
                return _Outcome(plan, applied=False)
            if not plan.has_changes:
                settle(snapshot, store)
                if not _sync_proxy(desired, snapshot.observed, quiet):
                    remember_noop(repo, snapshot)
                return _Outcome(plan, applied=True)
            if not quiet and plan != shown:
                render_plan(plan)
            result = apply_plan(snapshot, provider, store, progress)
            record_apply(store, repo, result)
            proxy_error = _proxy_after_apply(desired, provider, quiet)
        finally:
            provider.close()
    return _Outcome(plan, applied=True, result=result, proxy_error=proxy_error)


def _proxy_after_apply(desired: Desired, provider: DockerProvider, quiet: bool) -> str | None:
    """The proxy step once the containers are up; its error, so the apply's outcome is still
    shown."""
    from nebula.errors import NebulaError

    try:
        _sync_proxy(desired, provider.observe(), quiet)
    except NebulaError as exc:
        return str(exc)
    return None


def _sync_proxy(desired: Desired, observed: Observed, quiet: bool) -> bool:
    """Route the exposed hostnames through Caddy; True when Caddy's config changed."""
    from nebula.kinds.routes.apply import sync_proxy

    result = sync_proxy(desired, observed)
    if result is None or not result.changes:
        return False
    if not quiet:
        for change in result.changes:
            style = _STYLE[change.action.value]
            err_console().print(
                f"[{style}]{_SIGN[change.action.value]}[/] proxy {change.id}: {change.reason}",
                highlight=False,
            )
    return True


def _deletions(the_plan: Plan) -> set[tuple[str, str]]:
    """The containers `the_plan` deletes, by installation and name."""
    return {
        (c.installation, c.name)
        for c in the_plan.pending
        if c.action.value == "delete" and c.kind.value == "container"
    }


def _confirm_deletions(the_plan: Plan) -> None:
    deleting = _deletions(the_plan)
    if not sys.stdin.isatty():
        abort(f"the plan deletes {len(deleting)} container(s); rerun with --yes to allow it")
    if not typer.confirm(
        f"Delete {len(deleting)} container(s)? Named volumes are kept", default=False
    ):
        abort("nothing applied")


def _render_result(result: ApplyResult) -> None:
    for item in result.installations:
        if item.ok:
            verb = "removed" if item.removed else "running"
            console().print(f"[green]✓[/] {item.name} {verb} ({item.seconds:.1f}s)")
        else:
            console().print(f"[red]✗[/] {item.name} failed: ", end="")
            console().print(item.error or "unknown error", markup=False)
    failed = sum(not r.ok for r in result.installations)
    total = len(result.installations)
    if failed:
        console().print(f"\n[red]{failed} of {total} installation(s) failed.[/]")
    else:
        console().print(f"\n[green]Applied.[/] {total} installation(s) changed.")


def _result_json(result: ApplyResult) -> dict[str, object]:
    return {
        "ok": result.ok,
        "installations": [
            {
                "name": r.name,
                "ok": r.ok,
                "removed": r.removed,
                "seconds": round(r.seconds, 3),
                "error": r.error,
                "changes": [c.to_dict() for c in r.changes],
                "hook_output": r.hook_output,
            }
            for r in result.installations
        ],
    }
