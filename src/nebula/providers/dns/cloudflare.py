"""Cloudflare DNS through the official `cloudflare` SDK.

A read is the zone lookup (`GET /zones?name=`) and the record list, page by page, as many pages
as `result_info.total_pages` says. Writes go through the batch endpoint
(`POST /zones/{id}/dns_records/batch`: deletes, patches, puts, posts in one transaction), at
most `BATCH_LIMIT` operations per call (the free plan's limit). Cloudflare rejects a whole batch
for one bad record, so a refused batch is retried change by change and only the refused ones
fail. Ownership is the record comment `managed by nebula`; a record set counts as Nebula's only
when every record in it carries it.

Rate limits: the SDK retries a 429 after the `Retry-After` the API sends (exponential back-off
when it sends none), up to `max_retries` times; only then is the zone's sync failed.

Cloudflare addresses records one by one, so a record set's change becomes record operations:
values kept are patched only when their TTL, proxying or comment change; a removed value and
an added one are paired into one patch (the record keeps its id); the rest are deletes and posts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Self, cast

import cloudflare
from cloudflare import Cloudflare

from nebula.errors import ProviderError
from nebula.kinds.dns.types import (
    MANAGED_TYPES,
    OWNER_COMMENT,
    ChangeFailure,
    DnsAction,
    DnsChange,
    ObservedRRSet,
    ZoneAccount,
    ZonePlan,
    ZoneState,
)
from nebula.providers.dns.base import Capabilities

DEFAULT_API = "https://api.cloudflare.com/client/v4"
BATCH_LIMIT = 200
PROXIABLE = frozenset({"A", "AAAA", "CNAME"})

_Ops = dict[str, list[dict[str, Any]]]


class CloudflareProvider:
    name: ClassVar[str] = "cloudflare"
    capabilities: ClassVar[Capabilities] = Capabilities(record_types=MANAGED_TYPES, proxied=True)

    @classmethod
    def open(cls, account: ZoneAccount, token: str) -> Self:
        return cls(token, account.api_url)

    def __init__(
        self,
        api_token: str,
        api_url: str | None = None,
        *,
        page_size: int = 1000,
        max_retries: int = 5,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = (api_url or DEFAULT_API).rstrip("/")
        self.page_size = page_size
        self._client = Cloudflare(
            api_token=api_token, base_url=self.api_url, max_retries=max_retries, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    # -- read ------------------------------------------------------------------------------

    def read(self, zone: str) -> ZoneState:
        with self._errors(zone, "reading the zone"):
            zones = self._client.zones.list(name=zone, per_page=5)
            zone_id = next((z.id for z in zones.result if z.name == zone), None)
            if zone_id is None:
                return ZoneState(zone, exists=False)
            raw: list[dict[str, Any]] = []
            page = 1
            while True:
                listed = self._client.dns.records.list(
                    zone_id=zone_id, page=page, per_page=self.page_size
                )
                raw.extend(r.to_dict() for r in listed.result)
                info = listed.result_info.to_dict() if listed.result_info else {}
                if not listed.result or page >= _total_pages(
                    info, len(listed.result), self.page_size
                ):
                    break
                page += 1
        return ZoneState(zone, True, _group(raw), zone_id)

    # -- write -----------------------------------------------------------------------------

    def apply(self, plan: ZonePlan) -> list[ChangeFailure]:
        zone = plan.zone
        if plan.create_zone:
            raise ProviderError(
                f"zone {zone}",
                "the zone is not in this Cloudflare account: add it there first (Nebula manages "
                "a zone's records, not the zone itself)",
                temporary=False,
            )
        zone_id = plan.state.zone_id
        assert zone_id is not None  # a zone that exists was read with its id
        pending = plan.pending
        if not pending:
            return []
        try:
            for chunk in _chunks(pending):
                self._batch(zone, zone_id, _operations(chunk))
            return []
        except _RefusedError:
            pass  # one record spoils a whole batch: isolate it below
        failures = []
        current = {r.key: r for r in self.read(zone).rrsets}  # earlier chunks may have landed
        for planned in pending:
            observed = current.get((planned.name, planned.type))
            change = planned if planned.observed == observed else _rebased(planned, observed)
            if change is None:
                continue
            try:
                self._batch(zone, zone_id, _operations([change]))
            except _RefusedError as exc:
                failures.append(ChangeFailure(planned, f"Cloudflare refused it: {exc}"))
        return failures

    def _batch(self, zone: str, zone_id: str, ops: _Ops) -> None:
        if not any(ops.values()):
            return
        with self._errors(zone, "writing the zone", refusable=True):
            self._client.dns.records.batch(
                zone_id=zone_id,
                deletes=cast(Any, ops["deletes"]),
                patches=cast(Any, ops["patches"]),
                posts=cast(Any, ops["posts"]),
            )

    # -- errors ----------------------------------------------------------------------------

    def _errors(self, zone: str, doing: str, *, refusable: bool = False) -> _ErrorBoundary:
        return _ErrorBoundary(f"zone {zone}", doing, self.api_url, refusable)


def _total_pages(info: dict[str, Any], count: int, page_size: int) -> int:
    """Pages in all, from `result_info` (the SDK's model keeps the fields it does not name)."""
    if info.get("total_pages") is not None:
        return int(info["total_pages"])
    if info.get("total_count") is not None:
        return -(-int(info["total_count"]) // page_size)
    return 1 if count < page_size else 1_000_000  # no totals: read until a short page


class _RefusedError(Exception):
    """Cloudflare rejected the data of a write (not the caller): isolate the culprit."""


class _ErrorBoundary:
    """Translates the SDK's exceptions into `ProviderError` (or `_RefusedError` for bad data)."""

    def __init__(self, resource: str, doing: str, api_url: str, refusable: bool) -> None:
        self.resource, self.doing, self.api_url, self.refusable = (
            resource,
            doing,
            api_url,
            refusable,
        )

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if isinstance(exc, cloudflare.APIConnectionError):
            raise ProviderError(
                self.resource, f"{self.doing}: Cloudflare API at {self.api_url} is unreachable"
            ) from None
        if isinstance(exc, cloudflare.AuthenticationError | cloudflare.PermissionDeniedError):
            raise ProviderError(
                self.resource,
                f"{self.doing}: Cloudflare refused the API token ({_messages(exc)}); check the "
                "account's token secret and that it may edit DNS of this zone",
                temporary=False,
            ) from None
        if isinstance(exc, cloudflare.RateLimitError):
            raise ProviderError(
                self.resource, f"{self.doing}: still rate limited after retries ({_messages(exc)})"
            ) from None
        if isinstance(exc, cloudflare.APIStatusError):
            if self.refusable and 400 <= exc.status_code < 500:
                raise _RefusedError(_messages(exc)) from None
            raise ProviderError(
                self.resource,
                f"{self.doing}: Cloudflare answered {exc.status_code} ({_messages(exc)})",
                temporary=exc.status_code >= 500,
            ) from None


def _messages(exc: cloudflare.APIStatusError) -> str:
    body = exc.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        return "; ".join(
            f"code {e.get('code')}: {e.get('message')}" if isinstance(e, dict) else str(e)
            for e in errors
        )
    return f"HTTP {exc.status_code}"


def _chunks(changes: Sequence[DnsChange]) -> Iterable[list[DnsChange]]:
    """Changes grouped so that no batch exceeds `BATCH_LIMIT` record operations."""
    chunk: list[DnsChange] = []
    size = 0
    for change in changes:
        weight = max(
            len(change.desired.values) if change.desired else 0,
            len(change.observed.values) if change.observed else 0,
            1,
        )
        if chunk and size + weight > BATCH_LIMIT:
            yield chunk
            chunk, size = [], 0
        chunk.append(change)
        size += weight
    if chunk:
        yield chunk


def _rebased(change: DnsChange, observed: ObservedRRSet | None) -> DnsChange | None:
    """The change against the record set as it is now (after a partly applied batch)."""
    if change.action is DnsAction.DELETE:
        if observed is None:
            return None
        return DnsChange(change.action, change.name, change.type, change.reason, None, observed)
    action = DnsAction.CREATE if observed is None else DnsAction.UPDATE
    return DnsChange(action, change.name, change.type, change.reason, change.desired, observed)


def _operations(changes: Iterable[DnsChange]) -> _Ops:
    ops: _Ops = {"deletes": [], "patches": [], "posts": []}
    for change in changes:
        ids: dict[str, list[str]] = {}
        observed = change.observed
        for value, record_id in observed.record_ids if observed else ():
            ids.setdefault(value, []).append(record_id)
        if change.action is DnsAction.DELETE:
            ops["deletes"].extend({"id": i} for found in ids.values() for i in found)
            continue
        desired = change.desired
        assert desired is not None
        wanted = list(desired.values)
        kept = [v for v in wanted if v in ids]
        added = [v for v in wanted if v not in ids]
        spare = [i for v, found in ids.items() for i in (found if v not in wanted else found[1:])]
        same_settings = (
            observed is not None
            and observed.owned
            and (observed.ttl, observed.proxied) == (desired.ttl, desired.proxied)
        )
        for value in kept:
            if not same_settings:
                ops["patches"].append({"id": ids[value][0], **_body(change, value)})
        for value in added:
            if spare:
                ops["patches"].append({"id": spare.pop(), **_body(change, value)})
            else:
                ops["posts"].append(_body(change, value))
        ops["deletes"].extend({"id": i} for i in spare)
    return ops


def _body(change: DnsChange, value: str) -> dict[str, Any]:
    """The Cloudflare record for one canonical value of a change's record set."""
    desired = change.desired
    assert desired is not None
    kind = change.type
    body: dict[str, Any] = {
        "name": change.name,
        "type": kind,
        "ttl": desired.ttl,
        "comment": OWNER_COMMENT,
    }
    if kind in PROXIABLE:
        body["proxied"] = desired.proxied
    words = value.split()
    if kind == "MX":
        body["priority"] = int(words[0])
        body["content"] = words[1]
    elif kind == "SRV":
        priority, weight, port, target = words
        body["data"] = {
            "priority": int(priority),
            "weight": int(weight),
            "port": int(port),
            "target": target,
        }
    elif kind == "CAA":
        flags, tag, rest = value.split(None, 2)
        body["data"] = {"flags": int(flags), "tag": tag, "value": rest.strip('"')}
    else:
        body["content"] = value
    return body


def from_record(record: dict[str, Any]) -> str:
    """A Cloudflare record → canonical data (see `nebula.kinds.dns.types`)."""
    kind = record["type"]
    content = str(record.get("content") or "")
    data = record.get("data") or {}
    if kind == "MX":
        target = content.rstrip(".").lower() or "."
        return f"{_int(record.get('priority'))} {target}"
    if kind == "SRV":
        if data:
            numbers = " ".join(str(_int(data[k])) for k in ("priority", "weight", "port"))
            return f"{numbers} {_host(data['target'])}"
        weight, port, target = content.split()
        return f"{_int(record.get('priority'))} {weight} {port} {_host(target)}"
    if kind == "CAA" and data:
        return f'{_int(data["flags"])} {str(data["tag"]).lower()} "{data["value"]}"'
    if kind == "CNAME":
        return _host(content)
    if kind == "TXT" and len(content) >= 2 and content[0] == content[-1] == '"':
        return content[1:-1].replace('\\"', '"')
    return content


def _int(value: object) -> int:
    """The SDK's models read numbers as floats: 10.0 → 10."""
    return int(float(str(value or 0)))


def _host(name: object) -> str:
    return str(name).rstrip(".").lower() or "."


def _group(records: list[dict[str, Any]]) -> tuple[ObservedRRSet, ...]:
    sets: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        sets.setdefault((str(record["name"]).lower(), str(record["type"])), []).append(record)
    out = []
    for (name, kind), members in sorted(sets.items()):
        pairs = sorted((from_record(r), str(r["id"])) for r in members)
        out.append(
            ObservedRRSet(
                name=name,
                type=kind,
                ttl=min(int(r.get("ttl") or 1) for r in members),
                values=tuple(v for v, _ in pairs),
                proxied=all(bool(r.get("proxied")) for r in members),
                owned=all(r.get("comment") == OWNER_COMMENT for r in members),
                record_ids=tuple(pairs),
            )
        )
    return tuple(out)
