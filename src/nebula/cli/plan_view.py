"""How a Plan is shown: one table for the packages, one line per route, DNS zone by zone; and
the same plan as JSON for scripts.

The JSON keeps the shape scripts already read: `summary` and `changes` are the packages'
(containers, networks, volumes), `proxy` is present when routes change or Caddy cannot be read,
`dns` when the repo has zones; `unsafe` lists what the prune guard refuses; `waiting` what waits
for something outside the plan (an installation moving to another node), when anything does.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from nebula.cli.output import console, err_console

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nebula.kinds.base import Applied
    from nebula.kinds.dns.apply import ZoneOutcome
    from nebula.plan import Change, Part, Plan

STYLE = {"create": "green", "update": "yellow", "delete": "red", "noop": "dim"}
SHOWN_APART = ("packages", "routes", "dns")  # shown in their own way; any other kind by line
SIGN = {"create": "+", "update": "~", "delete": "-", "noop": " "}


def plan_json(the_plan: Plan, prune_max: int | None = None) -> dict[str, Any]:
    packages = the_plan.part("packages")
    data: dict[str, Any] = {
        "summary": packages.counts(),
        "changes": [c.to_dict() for c in packages.changes],
    }
    routes = the_plan.part("routes")
    if routes.changes or routes.problems:
        error = "; ".join(p.removeprefix("proxy: ") for p in routes.problems) or None
        data["proxy"] = {"changes": [c.to_dict() for c in routes.changes], "error": error}
    zones = zone_outcomes(the_plan.part("dns"))
    if zones:
        data["dns"] = {"zones": [o.to_dict() for o in zones]}
    for part in the_plan.parts:
        if part.kind not in SHOWN_APART:
            data[part.kind] = {
                "changes": [c.to_dict() for c in part.changes],
                "problems": list(part.problems),
            }
    unsafe = the_plan.unsafe(prune_max)
    if unsafe:
        data["unsafe"] = unsafe
    waiting = [note for part in the_plan.parts for note in part.notes]
    if waiting:
        data["waiting"] = waiting
    return data


def zone_outcomes(part: Part | Applied) -> list[ZoneOutcome]:
    """The zones a DNS part planned, or a DNS apply applied."""
    return list(part.detail or [])


def render_plan(the_plan: Plan, show_unchanged: bool = False) -> None:
    """The whole plan on the terminal; what waits for something outside it (a move to another
    node) after the changes; problems (Caddy or a zone unreadable) as warnings."""
    from rich.markup import escape

    from nebula.plan import summarize

    packages, routes = the_plan.part("packages"), the_plan.part("routes")
    if packages.has_changes or show_unchanged:
        render_packages(packages, show_unchanged)
    render_routes(routes.changes)
    zones = zone_outcomes(the_plan.part("dns"))
    if zones:
        from nebula.cli.dns_render import render_outcomes

        render_outcomes(zones)
    for part in the_plan.parts:
        if part.kind == "swarm":  # installations too: a table like the packages'
            render_packages(part, show_unchanged)
            render_changes(dataclasses.replace(part, changes=()))  # its problems
        elif part.kind not in SHOWN_APART:
            render_changes(part)
    for note in (note for part in the_plan.parts for note in part.notes):
        console().print(f"[cyan]… waiting:[/] {escape(note)}", highlight=False)
    for problem in routes.problems:
        err_console().print("[bold yellow]warning:[/] ", end="")
        err_console().print(
            f"proxy changes unknown: {problem.removeprefix('proxy: ')}", markup=False
        )
    if the_plan.has_changes:
        console().print(f"\nPlan: {summarize(the_plan.counts())}", highlight=False)
    else:
        console().print(f"[green]No changes.[/] {summarize(the_plan.counts())}")


def render_packages(part: Part, show_unchanged: bool = False) -> None:
    shown = part.changes if show_unchanged else part.pending
    if not shown:
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("", "installation", "kind", "name", "reason"):
        table.add_column(column, overflow="fold")
    for change in shown:
        data = change.to_dict()
        action = data["action"]
        table.add_row(
            f"[{STYLE[action]}]{SIGN[action]} {action}[/]",
            *(Text(str(data[key])) for key in ("installation", "kind", "name", "reason")),
        )
    console().print(table)


def render_routes(changes: Sequence[Change], *, done: bool = False) -> None:
    """One line per route or TLS policy changed; on stderr once `done` (apply's progress)."""
    out = err_console() if done else console()
    for change in changes:
        action = str(change.action)
        if action == "noop":
            continue
        verb = "" if done else f" {action}"
        out.print(
            f"[{STYLE[action]}]{SIGN[action]}{verb}[/] proxy {change.name}: {change.reason}",
            highlight=False,
        )


def render_changes(part: Part) -> None:
    """A kind's pending changes, one line each, and what it could not plan."""
    for change in part.pending:
        action = str(change.action)
        console().print(f"[{STYLE[action]}]{SIGN[action]} {action}[/] ", end="", highlight=False)
        console().print(f"{part.kind} {change.name}: {change.reason}", markup=False)
    for problem in part.problems:
        err_console().print("[bold yellow]warning:[/] ", end="")
        err_console().print(f"{part.kind}: {problem}", markup=False)
