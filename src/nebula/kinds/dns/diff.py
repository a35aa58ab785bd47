"""The pure diff of a zone's desired record sets against what its provider holds.

Record sets (name, type) are compared, honouring ownership (see `nebula.kinds.dns.types`):

- desired, absent → create; desired, owned and different → update; owned, not desired → delete;
- desired, held by a foreign record set with the very same data → update that only marks it
  as Nebula's (adoption, e.g. after `nebula dns import`);
- desired, held by a foreign record set with other data → conflict: left alone, reported;
- foreign and not desired → reported as foreign, never touched.

It imports no spec model, so a no-op sync never loads them.
"""

from __future__ import annotations

from nebula.kinds.dns.types import (
    DesiredZone,
    DnsAction,
    DnsChange,
    ObservedRRSet,
    RRSet,
    ZonePlan,
    ZoneState,
)


def diff_zone(desired: DesiredZone, state: ZoneState) -> ZonePlan:
    """The changes that make `state` match `desired`, honouring ownership (module docstring)."""
    observed = {r.key: r for r in state.rrsets}
    wanted = {r.key: r for r in desired.rrsets}
    changes: list[DnsChange] = []
    for key in sorted(wanted.keys() | observed.keys()):
        want, have = wanted.get(key), observed.get(key)
        changes.append(_change(key, want, have))
    return ZonePlan(
        zone=desired.zone,
        provider=desired.provider,
        create_zone=not state.exists,
        changes=tuple(changes),
        state=state,
    )


def _change(key: tuple[str, str], want: RRSet | None, have: ObservedRRSet | None) -> DnsChange:
    name, kind = key
    if have is None:
        assert want is not None
        return DnsChange(DnsAction.CREATE, name, kind, f"new: {want.describe()}", want)
    if want is None:
        if have.owned:
            return DnsChange(
                DnsAction.DELETE, name, kind, "no longer in the config repo", observed=have
            )
        return DnsChange(DnsAction.FOREIGN, name, kind, "not Nebula's: left alone", observed=have)
    same = _same_data(want, have)
    if not have.owned:
        if same:
            return DnsChange(
                DnsAction.UPDATE, name, kind, "adopt: same data, marked as Nebula's", want, have
            )
        return DnsChange(
            DnsAction.CONFLICT,
            name,
            kind,
            f"a record set Nebula did not create holds {have.describe()}; remove it by hand, "
            "or make the config repo match it to adopt it",
            want,
            have,
        )
    if same:
        return DnsChange(DnsAction.NOOP, name, kind, "unchanged", want, have)
    return DnsChange(DnsAction.UPDATE, name, kind, _why(want, have), want, have)


def _same_data(want: RRSet, have: RRSet) -> bool:
    return (want.ttl, want.values, want.proxied) == (have.ttl, have.values, have.proxied)


def _why(want: RRSet, have: RRSet) -> str:
    reasons = []
    if want.values != have.values:
        reasons.append(f"{', '.join(have.values)} → {', '.join(want.values)}")
    if want.ttl != have.ttl:
        reasons.append(f"ttl {have.ttl} → {want.ttl}")
    if want.proxied != have.proxied:
        reasons.append(f"proxied {have.proxied} → {want.proxied}".lower())
    return "; ".join(reasons)
