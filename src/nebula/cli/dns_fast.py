"""`nebula dns plan|apply [--yes] [REPO]`, answered before typer loads.

A sync should cost little more than the interpreter's start, the zone's GET and PATCH, and
loading the typer application (every command of the CLI) costs more than that. So a plain
command line is carried out here: the zones are loaded as the full command loads them
(`kinds.dns.memo.load_zones`: remembered, or read and validated), planned, applied, recorded
(`kinds.dns.apply.record_apply`) and shown (`cli.dns_render`) exactly as the full command does.

Anything else returns None before any zone is written, and the full command runs: `--output
json` or any other option, a repo that does not load (the full command reports its errors), a
token only in the vault, deletions to confirm without `--yes`. The zones read by then are
handed over with their plans (`plans_read`), neither read nor diffed again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nebula.kinds.dns.apply import ZoneOutcome
    from nebula.kinds.dns.types import DesiredZone, ZonePlan

_planned: dict[str, ZonePlan] = {}
EXIT_FAILED = 1  # as `cli.output`, which imports typer


def plans_read() -> dict[str, ZonePlan]:
    """The plans of the zones this process read while trying the answer here, handed over
    once: the full command that runs next uses them instead of reading every zone again."""
    plans = dict(_planned)
    _planned.clear()
    return plans


def parse_args(args: list[str]) -> tuple[str, bool, Path] | None:
    """`plan|apply [--yes|-y] [REPO]` → (command, yes, repo); anything else → None."""
    if not args or args[0] not in ("plan", "apply"):
        return None
    command, rest = args[0], args[1:]
    yes = False
    if command == "apply":
        yes = any(a in ("--yes", "-y") for a in rest)
        rest = [a for a in rest if a not in ("--yes", "-y")]
    if len(rest) > 1 or any(a.startswith("-") for a in rest):
        return None
    return command, yes, Path(rest[0] if rest else ".")


def run(args: list[str]) -> int | None:
    """The exit code when answered here; None to run the full command."""
    parsed = parse_args(args)
    if parsed is None or not (parsed[2] / "nebula.yaml").is_file():
        return None
    import gc

    # A sync allocates many objects that live until it exits; the cycle collector would only
    # walk them again and again (a few percent of the command) and find nothing to free.
    gc.disable()
    code = _answer(*parsed)
    if code is None:
        gc.enable()  # the full command runs as always
    return code


def _answer(command: str, yes: bool, repo: Path) -> int | None:
    from nebula.errors import NebulaError
    from nebula.kinds.dns.memo import load_zones

    try:
        zones = load_zones(repo)
    except (NebulaError, OSError):  # the full command says which file, and why
        return None
    from nebula.kinds.dns.apply import SecretUnavailableError, environment_secrets, plan_zones

    try:
        for zone in zones:
            environment_secrets(zone.account.secret_name)
    except SecretUnavailableError:
        return None
    outcomes = plan_zones(zones, environment_secrets)
    _planned.update({o.zone: o.plan for o in outcomes if o.plan is not None})
    if command == "apply" and any(o.plan and o.plan.has_changes for o in outcomes):
        if not yes and _deletes(outcomes):
            return None  # to be confirmed: the full command asks
        applied = _apply(zones, outcomes)
        if applied is None:
            return EXIT_FAILED
        outcomes = applied
    from nebula.cli.dns_render import render_outcomes

    render_outcomes(outcomes, applied=command == "apply")
    return 0 if all(o.ok for o in outcomes) else EXIT_FAILED


def _deletes(outcomes: list[ZoneOutcome]) -> bool:
    return any(c.action.value == "delete" for o in outcomes if o.plan for c in o.plan.pending)


def _apply(zones: list[DesiredZone], planned: list[ZoneOutcome]) -> list[ZoneOutcome] | None:
    """Apply and record as `dns apply` does; None when recording failed (said on stderr)."""
    from nebula.cli.audit_trail import actor
    from nebula.errors import NebulaError
    from nebula.kinds.dns.apply import apply_zones, environment_secrets, record_apply
    from nebula.store.db import default_url

    known = {o.zone: o.plan for o in planned if o.plan is not None}
    outcomes = apply_zones(zones, environment_secrets, known=known)
    if any(o.applied or o.error for o in outcomes):
        try:
            record_apply(default_url(), outcomes, actor())
        except NebulaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    return outcomes
