"""`nebula dns plan|apply [--yes] [REPO]` when nothing changed, answered before typer loads.

A no-op sync should cost little more than the interpreter's start, and loading the typer
application (every command of the CLI) costs more than the sync itself. So a plain command line
is tried here first: when the repo's files are those of an earlier load (`engine.dns_memo`), the
tokens are in the environment, and every zone reads back exactly as desired, the answer is
printed here and the command exits 0. Anything else (a file changed, a change or a conflict to
show, an error, a token only in the vault, `--output json`, any other option) returns None and
the full command runs, with the zones already read (`states_read`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nebula.zones import ZoneState

_read: dict[str, ZoneState] = {}


def states_read() -> dict[str, ZoneState]:
    """The zones this process read while trying the no-op answer, handed over once: the full
    command that runs next uses them instead of reading every zone again."""
    states = dict(_read)
    _read.clear()
    return states


def parse_args(args: list[str]) -> tuple[str, Path] | None:
    """`plan|apply [--yes|-y] [REPO]` → (command, repo); anything else → None."""
    if not args or args[0] not in ("plan", "apply"):
        return None
    command, rest = args[0], args[1:]
    if command == "apply":
        rest = [a for a in rest if a not in ("--yes", "-y")]
    if len(rest) > 1 or any(a.startswith("-") for a in rest):
        return None
    return command, Path(rest[0] if rest else ".")


def run(args: list[str]) -> int | None:
    """The exit code when answered here; None to run the full command."""
    parsed = parse_args(args)
    if parsed is None or not (parsed[1] / "nebula.yaml").is_file():
        return None
    from nebula.engine.dns_memo import remembered_zones

    try:
        zones = remembered_zones(parsed[1])
    except OSError:  # a file that cannot be read: the full command says which, and why
        return None
    if not zones:
        return None
    from nebula.engine.dns import SecretUnavailableError, environment_secrets, plan_zones

    try:
        for zone in zones:
            environment_secrets(zone.account.secret_name)
    except SecretUnavailableError:
        return None
    outcomes = plan_zones(zones, environment_secrets)
    _read.update({o.zone: o.state for o in outcomes if o.state is not None})
    if not all(o.ok and o.plan is not None and not o.plan.has_changes for o in outcomes):
        return None
    from nebula.cli.dns_render import render_outcomes

    render_outcomes(outcomes)
    return 0
