"""How `nebula dns plan|apply` show a zone: plain aligned lines on stdout, one per change.

No rich here: a zone of thousands of records prints in milliseconds (a rich table would spend
seconds measuring its cells). Colours only on a terminal, and never with NO_COLOR.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nebula.kinds.dns.apply import ZoneOutcome
    from nebula.kinds.dns.types import DnsChange

COLOUR = {"create": "green", "update": "yellow", "delete": "red", "conflict": "red"}
_SIGN = {"create": "+", "update": "~", "delete": "-", "conflict": "!", "foreign": " "}
_ANSI = {"green": "32", "yellow": "33", "red": "31", "bright_black": "90", "bold": "1"}


def render_outcomes(
    outcomes: Sequence[ZoneOutcome], *, show_foreign: bool = False, applied: bool = False
) -> None:
    for outcome in outcomes:
        _render(outcome, show_foreign, applied)
    if not outcomes:
        _echo("No domains/*.yaml in this config repo.")
    sys.stdout.flush()


def _render(outcome: ZoneOutcome, show_foreign: bool, applied: bool) -> None:
    """Plain lines on stdout (no rich: a no-op sync should not pay for loading it)."""
    head = f"{_bold(outcome.zone)} ({outcome.provider})"
    if outcome.plan is None:
        _echo(f"{head} {_style('✗', 'red')} {outcome.error or 'failed'}")
        return
    plan = outcome.plan
    shown = [
        c
        for c in plan.changes
        if c.action.value in COLOUR or (show_foreign and c.action.value == "foreign")
    ]
    counts = plan.counts()
    summary = (
        f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to "
        f"delete, {counts['noop']} unchanged, {counts['foreign']} foreign (left alone)"
    )
    if plan.create_zone:
        summary = "zone to create; " + summary
    if counts["conflict"]:
        summary += f", {counts['conflict']} in conflict"
    _echo(head)
    if shown:
        _lines(shown)
    _echo(f"  {summary}")
    for failure in outcome.failures:
        _echo(f"  {_style('✗', 'red')} {failure}")
    if outcome.error:
        _echo(f"  {_style('✗', 'red')} {outcome.error}")
    elif applied and outcome.applied and not outcome.failures:
        _echo(f"  {_style('✓ applied', 'green')}")


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _style(text: str, colour: str) -> str:
    return f"\x1b[{_ANSI[colour]}m{text}\x1b[0m" if _colour() else text


def _bold(text: str) -> str:
    return _style(text, "bold")


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")


def _lines(changes: list[DnsChange]) -> None:
    """One aligned line per change, written at once: a zone of thousands of records prints in
    milliseconds (a rich table would spend seconds measuring its cells)."""
    width = max(len(c.name) for c in changes)
    marks = {
        action: _style(f"{sign} {action:<8}", COLOUR.get(action, "bright_black"))
        for action, sign in _SIGN.items()
    }
    lines = [
        f"{marks[c.action.value]} {c.name:<{width}}  {c.type:<5}  {c.reason}\n" for c in changes
    ]
    sys.stdout.write("".join(lines))
