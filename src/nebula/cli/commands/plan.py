"""`nebula plan` and `nebula apply`: the pipeline over every kind, or `--only` some."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nebula.cli import complete
from nebula.cli.audit_trail import record_apply
from nebula.cli.options import DatabaseUrl, DockerHost, Output, RepoDir
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
)
from nebula.engine.session import load, open_store, remember_noop, replay_noop

if TYPE_CHECKING:
    from nebula.engine.pipeline import Outcome
    from nebula.engine.session import Store
    from nebula.kinds.base import Applied, Desired, World
    from nebula.kinds.packages.apply import ApplyResult
    from nebula.plan import Plan

Only = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        help="Only these kinds (repeatable): packages, routes, dns. Default: every kind.",
        metavar="KIND",
    ),
]


NodeName = Annotated[
    str | None,
    typer.Option(
        "--node",
        help="The node whose installations to plan and apply (nebula.yaml `nodes`); routes, "
        "DNS and the other kinds are the whole homelab's. Default: the first node.",
        autocompletion=complete.nodes,
        show_default=False,
    ),
]


def _checked(only: list[str] | None) -> list[str] | None:
    from nebula.kinds.registry import KINDS

    unknown = sorted(set(only or ()) - set(KINDS))
    if unknown:
        abort(f"--only {', '.join(unknown)}: not a kind; one of {', '.join(KINDS)}", EXIT_INVALID)
    return only or None


@contextmanager
def world(
    database_url: str | None,
    docker_host: str | None,
    progress: Callable[[str, str], None] | None = None,
    store: Store | None = None,
    node: str | None = None,
) -> Iterator[World]:
    """What the kinds plan against, for `node` (None: the first): the store opened only if a
    kind needs it (a vault secret, an apply), Docker opened only if a kind reads it; both
    closed at the end."""
    from nebula.kinds.base import World

    opened: list[Store] = []

    def open_once() -> Store:
        if store is not None:
            return store
        if not opened:
            opened.append(open_store(database_url))
        return opened[0]

    the_world = World(open_once, docker_host=docker_host, node=node)
    if progress is not None:
        the_world.progress = progress
    try:
        yield the_world
    finally:
        the_world.close()
        for each in opened:
            each.close()


def preview(
    desired: Desired,
    database_url: str | None,
    docker_host: str | None,
    only: list[str] | None,
    node: str | None = None,
) -> Plan:
    """The plan (of `node`'s share; None: the first node's), changing nothing."""
    from nebula.engine import pipeline

    desired.repo.config.node_named(node)  # an unknown node stops here, naming the nodes
    with world(database_url, docker_host, node=node) as the_world:
        return pipeline.plan(desired, the_world, only)


def plan(
    repo: RepoDir = Path("."),
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
    show_unchanged: Annotated[
        bool, typer.Option("--show-unchanged", help="List resources that stay as they are.")
    ] = False,
    only: Only = None,
    node: NodeName = None,
) -> None:
    """Show what apply would change in every kind (containers, routes, DNS), and why.
    Changes nothing."""
    from nebula.cli.plan_view import plan_json, render_plan
    from nebula.errors import UnknownNodeError

    with handle_errors(output, invalid=UnknownNodeError):
        only = _checked(only)
        replayed = None if show_unchanged or only else replay_noop(repo, docker_host, node)
        if replayed is not None:
            if output is OutputFormat.json:
                print_json(replayed)
            else:
                _no_changes(replayed["summary"])
            return
        desired = load(repo, database_url)
        the_plan = preview(desired, database_url, docker_host, only, node)
        _remember(repo, desired, the_plan, only, node)
    if output is OutputFormat.json:
        print_json(plan_json(the_plan))
        return
    render_plan(the_plan, show_unchanged)


def _remember(
    repo: Path, desired: Desired, the_plan: Plan, only: list[str] | None, node: str | None
) -> None:
    """A plan of every kind that changed nothing is replayed next time while the repo's files
    and the containers stay exactly the same (zones and a swarm's services are read every time;
    a move waiting for another node depends on the store)."""
    packages = the_plan.part("packages")
    swarm = the_plan.part("swarm").changes
    if only or the_plan.has_changes or the_plan.problems or desired.zones or packages.notes:
        return
    if swarm:  # services, read every time: a `docker service rm` must not replay "No changes"
        return
    if packages.detail is not None:
        remember_noop(repo, packages.detail, node)


def _no_changes(counts: dict[str, int]) -> None:
    from nebula.plan import summarize

    console().print(f"[green]No changes.[/] {summarize(counts)}")


def apply(
    repo: RepoDir = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting.")] = False,
    docker_host: DockerHost = None,
    database_url: DatabaseUrl = None,
    output: Output = OutputFormat.table,
    only: Only = None,
    node: NodeName = None,
) -> None:
    """Make the world match the config repo: plan every kind, then carry out the plan.

    Installations are applied in parallel, then routes, then DNS; one that fails is reported
    with its cause and does not stop the others. Deletions (containers, routes, record sets)
    are confirmed first unless --yes, and so is a plan the prune guard finds unsafe.
    Exit code 1 when anything failed.
    """
    quiet = output is OutputFormat.json

    def progress(what: str, message: str) -> None:
        if not quiet:  # a reason may hold brackets (`command changed [sh, -c, …]`): no markup
            from rich.markup import escape

            err_console().print(f"[cyan]{escape(what)}[/] {escape(message)}", highlight=False)

    from nebula.errors import UnknownNodeError

    with handle_errors(output, invalid=UnknownNodeError):
        only = _checked(only)
        replayed = None if only else replay_noop(repo, docker_host, node)
        if replayed is not None:
            if quiet:
                print_json({"ok": True, "summary": replayed["summary"], "installations": []})
            else:
                _no_changes(replayed["summary"])
            return
        outcome = run_apply(repo, yes, docker_host, database_url, only, quiet, progress, node=node)
    _report(outcome, quiet)


def run_apply(
    repo: Path,
    yes: bool,
    docker_host: str | None,
    database_url: str | None,
    only: list[str] | None,
    quiet: bool,
    progress: Callable[[str, str], None],
    narrow: Callable[[Desired], Desired] | None = None,
    node: str | None = None,
) -> Outcome:
    """The pipeline (of `node`'s share; None: the first node's) under the store's apply lock. Deletions, and a plan the prune guard finds
    unsafe, are confirmed with the lock released (a prompt never stalls nebulad or another
    apply), then planned again under it: what was not confirmed is asked about again, never
    carried out. The plan is shown before it is confirmed or applied unless `quiet`; `narrow`
    selects part of the desired state (`nebula dns apply --zone`)."""
    from nebula.cli.plan_view import render_plan as show
    from nebula.engine import pipeline

    store = open_store(database_url)
    try:
        agreed: set[tuple[str, str]] | None = None if yes else set()
        shown: Plan | None = None

        def allow(the_plan: Plan) -> bool:
            if agreed is not None and not consent(the_plan) <= agreed:
                return False
            if not quiet and the_plan.has_changes and the_plan != shown:
                show(the_plan)
            return True

        while True:
            with (
                store.apply_lock(  # the node's lock too: its nebulad may apply it meanwhile
                    "nebula apply", lambda message: progress("*", message), node=node
                ),
                world(database_url, docker_host, progress, store, node) as the_world,
            ):
                desired = load(repo, database_url)
                desired.repo.config.node_named(node)  # an unknown node: stop, naming the nodes
                if narrow is not None:
                    desired = narrow(desired)
                outcome = pipeline.run(desired, the_world, only=only, allow=allow)
                if outcome.applied is not None:
                    _record(store, repo, outcome.applied)
                    if not outcome.plan.has_changes:
                        _remember(repo, desired, outcome.plan, only, node)
                    return outcome
            if shown is not None:
                err_console().print("[bold yellow]The plan changed since it was confirmed:[/]")
            if not quiet:
                show(outcome.plan)
            confirm(outcome.plan)
            agreed, shown = consent(outcome.plan), outcome.plan
    finally:
        store.close()


def _record(store: Store, repo: Path, applied: tuple[Applied, ...]) -> None:
    """Audit: one entry per installation changed, one per zone applied or failed."""
    from nebula.cli.audit_trail import record

    for done in applied:
        if done.kind == "packages" and done.detail is not None:
            record_apply(store, repo, done.detail)
        elif done.kind == "dns":
            from nebula.kinds.dns.apply import audit_entries

            for zone, detail in audit_entries(done.detail or []):
                record(store, "dns.apply", zone, detail)


def deletions(the_plan: Plan) -> set[tuple[str, str]]:
    """What `the_plan` deletes that a person confirms, by kind: containers and Swarm services
    (the networks go with them; volumes are never deleted) and record sets. Routes follow `expose:` and are not
    asked about (the prune guard still is)."""
    return {
        (part.kind, f"{data.get('installation', '')} {change.name} {data.get('type', '')}")
        for part in the_plan.parts
        if part.kind != "routes"
        for change in part.pending
        if str(change.action) == "delete"
        and (data := change.to_dict()).get("kind", "container") in ("container", "service")
    }


def consent(the_plan: Plan) -> set[tuple[str, str]]:
    """What a person agrees to by confirming `the_plan`: its deletions, and what the prune
    guard finds unsafe in it."""
    return deletions(the_plan) | {("guard", reason) for reason in the_plan.unsafe(None)}


def confirm(the_plan: Plan) -> None:
    """Ask before deleting, and before a plan the prune guard finds unsafe (saying why).
    Without a terminal, refuse and say how to allow it."""
    unsafe = the_plan.unsafe(None)
    deleting = _counted(the_plan)
    if not sys.stdin.isatty():
        what = f"the plan deletes {deleting}" if deleting else "the prune guard stops the plan"
        guard = f" (prune guard: {'; '.join(unsafe)})" if unsafe else ""
        abort(f"{what}; rerun with --yes to allow it{guard}")
    for reason in unsafe:
        err_console().print(f"[bold red]prune guard:[/] {reason}", highlight=False)
    volumes = any(kind == "packages" for kind, _ in deletions(the_plan))
    question = f"Delete {deleting}?" if deleting else "Apply it anyway?"
    if not typer.confirm(question + (" Named volumes are kept" if volumes else ""), default=False):
        abort("nothing applied")


def _counted(the_plan: Plan) -> str:
    """`2 container(s) and 3 record set(s)`."""
    names = {"packages": "container(s)", "swarm": "service(s)", "dns": "record set(s)"}
    counts: dict[str, int] = {}
    for kind, _ in deletions(the_plan):
        counts[kind] = counts.get(kind, 0) + 1
    return " and ".join(f"{n} {names.get(kind, kind)}" for kind, n in counts.items())


def _report(outcome: Outcome, quiet: bool) -> None:
    """What was applied, kind by kind; exit 1 when anything failed."""
    from nebula.cli.plan_view import render_routes, zone_outcomes

    result: ApplyResult | None = outcome.of("packages").detail
    routes = outcome.of("routes")
    route_errors = [e.removeprefix("proxy: ") for e in routes.errors]
    zones = zone_outcomes(outcome.of("dns"))
    if quiet:
        data: dict[str, Any] = (
            _result_json(result)
            if result is not None
            else {
                "ok": True,
                "summary": outcome.plan.part("packages").counts(),
                "installations": [],
            }
        )
        data["proxy_error"] = "; ".join(route_errors) or None
        swarm = outcome.of("swarm")
        if swarm.changes or swarm.errors:
            changes = [c.to_dict() for c in swarm.changes]
            data["swarm"] = {"changes": changes, "errors": list(swarm.errors)}
        if zones:
            data["dns"] = {"zones": [z.to_dict() for z in zones]}
        data["ok"] = not outcome.errors
        print_json(data)
    else:
        render_routes(routes.changes, done=True)
        if result is not None and result.installations:
            _render_result(result)
        _render_swarm(outcome.of("swarm"))
        if not outcome.plan.has_changes:
            _no_changes(outcome.plan.counts())
        if outcome.plan.part("dns").has_changes or not all(z.ok for z in zones):
            from nebula.cli.dns_render import render_outcomes

            render_outcomes(zones, applied=True)
        for error in route_errors:
            err_console().print("[bold red]error:[/] ", end="")
            err_console().print(error, markup=False)
    if outcome.errors:
        raise typer.Exit(EXIT_FAILED)


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


def _render_swarm(applied: Applied) -> None:
    """The swarm's installations the apply changed, and why each that failed did."""
    failed = {error.partition(":")[0] for error in applied.errors}
    for name in dict.fromkeys(str(c.to_dict()["installation"]) for c in applied.changes):
        if name not in failed:
            console().print(f"[green]✓[/] {name} running on the swarm")
    for error in applied.errors:
        console().print("[red]✗[/] ", end="")
        console().print(error, markup=False)


def _result_json(result: ApplyResult) -> dict[str, Any]:
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
                "builds": dict(r.builds),
            }
            for r in result.installations
        ],
    }
