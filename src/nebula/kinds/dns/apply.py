"""DNS plan and apply, zone by zone: read the zone, diff it, write the difference.

Each zone stands alone: a zone whose provider refuses the token, cannot be reached, or rejects
a record is reported with its cause, and the other zones go on. A zone that cannot be read is
never written: nothing published is removed because a read failed. Provider tokens are
`${secret:NAME}` references, resolved by an injectable `SecretResolver` at the moment a zone is
opened, and never stored or printed.

After an apply the zone's records are not read again: the state left behind is the state read
plus the changes that succeeded (one GET and one write per zone, whatever its size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nebula.errors import NebulaError
from nebula.kinds.dns.diff import diff_zone
from nebula.kinds.dns.types import (
    PENDING,
    ChangeFailure,
    DesiredZone,
    DnsAction,
    ObservedRRSet,
    ZonePlan,
    ZoneState,
)
from nebula.providers.dns.base import DnsProvider
from nebula.providers.registry import provider_class
from nebula.secrets.resolve import SecretResolver, environment_secrets

if TYPE_CHECKING:
    from nebula.store import Store

ProviderFactory = Callable[[DesiredZone, str], DnsProvider]


def open_dns_provider(zone: DesiredZone, token: str) -> DnsProvider:
    """The provider adapter for a zone's account, found by name in the registry."""
    opened: DnsProvider = provider_class("dns", zone.provider).open(zone.account, token)
    return opened


@dataclass(frozen=True)
class ZoneOutcome:
    """One zone's plan, and after an apply what became of it."""

    zone: str
    provider: str
    plan: ZonePlan | None  # None: the zone could not be read
    error: str | None = None  # the whole zone failed (token, reachability, write)
    failures: tuple[ChangeFailure, ...] = ()
    applied: bool = False
    state: ZoneState | None = None  # what the zone holds now, as far as Nebula knows
    temporary: bool = False  # `error` may go away by itself (unreachable, rate limited, 5xx)

    @property
    def ok(self) -> bool:
        conflicts = self.plan.conflicts if self.plan else ()
        return self.error is None and not self.failures and not conflicts

    def to_dict(self) -> dict[str, Any]:
        """For `--output json` (no token: only the secret's name is known)."""
        return self._outcome() | {"plan": self.plan.to_dict() if self.plan else None}

    def audit_detail(self) -> dict[str, Any]:
        """For the audit log: `to_dict` with each change (and conflict) in one line, so an
        entry for a zone of thousands of records stays small and readable."""
        plan = self.plan
        shown = (*PENDING, DnsAction.CONFLICT)
        return self._outcome() | {
            "create_zone": plan.create_zone if plan else False,
            "changes": [c.line() for c in plan.changes if c.action in shown] if plan else [],
        }

    def _outcome(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "provider": self.provider,
            "ok": self.ok,
            "applied": self.applied,
            "error": self.error,
            "failures": [str(f) for f in self.failures],
        }

    def stored_error(self) -> str | None:
        """Every problem of the zone, without the zone's name, as the store keeps it."""
        prefix = f"zone {self.zone}: "
        return "\n".join(p.removeprefix(prefix) for p in self.problems()) or None

    def problems(self) -> list[str]:
        """Every error of the zone, one line each, for logs and sync records."""
        out = [f"zone {self.zone}: {self.error}"] if self.error else []
        out += [f"zone {self.zone}: {failure}" for failure in self.failures]
        if self.plan:
            out += [f"zone {self.zone}: {c.name} {c.type}: {c.reason}" for c in self.plan.conflicts]
        return out


def plan_zones(
    zones: Sequence[DesiredZone],
    secrets: SecretResolver = environment_secrets,
    factory: ProviderFactory = open_dns_provider,
) -> list[ZoneOutcome]:
    """Read every zone and diff it; a zone that cannot be read gets its error, not a plan."""
    return [_each(zone, secrets, factory, None) for zone in zones]


def apply_zones(
    zones: Sequence[DesiredZone],
    secrets: SecretResolver = environment_secrets,
    factory: ProviderFactory = open_dns_provider,
    known: Mapping[str, ZonePlan] | None = None,
) -> list[ZoneOutcome]:
    """Plan and apply every zone; one zone's failure never stops the others. `known`: zones
    planned a moment ago in this process (e.g. the plan shown before asking), applied as they
    were planned, not read nor diffed again."""
    return [
        _each(zone, secrets, factory, (known or {}).get(zone.zone), apply=True) for zone in zones
    ]


def _each(
    zone: DesiredZone,
    secrets: SecretResolver,
    factory: ProviderFactory,
    known: ZonePlan | None,
    *,
    apply: bool = False,
) -> ZoneOutcome:
    outcome = ZoneOutcome(zone.zone, zone.provider, None)
    try:
        provider = factory(zone, secrets(zone.account.secret_name))
    except NebulaError as exc:
        return replace(outcome, error=str(exc), temporary=exc.temporary)
    try:
        if known is None:
            state = provider.read(zone.zone)
            plan = diff_zone(zone, state)
        else:
            state, plan = known.state, known
        outcome = replace(outcome, plan=plan, state=state)
        if not apply or not plan.has_changes:
            return outcome
        failures = provider.apply(plan)
        return replace(
            outcome,
            failures=tuple(failures),
            applied=True,
            state=after(state, plan, failures),
        )
    except NebulaError as exc:
        return replace(outcome, error=_cause(exc, zone.zone), temporary=exc.temporary)
    finally:
        provider.close()


def _cause(exc: NebulaError, zone: str) -> str:
    """The error without the `zone X:` prefix the outcome already carries."""
    return str(exc).removeprefix(f"zone {zone}: ")


def after(state: ZoneState, plan: ZonePlan, failures: Iterable[ChangeFailure]) -> ZoneState:
    """The zone as the applied plan left it: `state` with every change that did not fail."""
    failed = {(f.change.name, f.change.type) for f in failures}
    rrsets = {r.key: r for r in state.rrsets}
    for change in plan.pending:
        key = (change.name, change.type)
        if key in failed:
            continue
        if change.action is DnsAction.DELETE:
            rrsets.pop(key, None)
        elif change.desired is not None:
            want = change.desired
            rrsets[key] = ObservedRRSet(
                want.name, want.type, want.ttl, want.values, want.proxied, owned=True
            )
    ordered = tuple(sorted(rrsets.values(), key=lambda r: r.key))
    return ZoneState(state.zone, True, ordered, state.zone_id)


def record_outcomes(store: Store, outcomes: Iterable[ZoneOutcome]) -> None:
    """Remember each zone's records (or, when it could not be read, only its error)."""
    from nebula.store.dns import DnsStore

    dns = DnsStore(store)
    for outcome in outcomes:
        dns.record_zone(outcome.zone, outcome.provider, outcome.state, outcome.stored_error())


def audit_entries(outcomes: Iterable[ZoneOutcome]) -> list[tuple[str, dict[str, Any]]]:
    """The `dns.apply` audit entries of an apply: (zone, detail) for each zone applied or
    failed; a zone left as it was gets none."""
    return [(o.zone, o.audit_detail()) for o in outcomes if o.applied or o.error]
