"""PowerDNS Authoritative through its HTTP API (`/api/v1/servers/{server}/zones/...`).

A read is one GET of the zone (every record set with its comments); a write is one PATCH of
every changed record set (a missing zone: one POST creating it with its record sets, then a
flush of what PowerDNS cached while it did not exist). Ownership is an rrset comment with
account `nebula`: PowerDNS keeps comments per record set, so a value added by hand to a record
set Nebula owns is replaced at its next change. PowerDNS applies a PATCH in one transaction,
so when it refuses one record set the PATCH is retried record set by record set and only the
refused ones fail.

Requests go through the standard library's `http.client` on one kept-alive connection: a sync
is a couple of requests, and a no-op sync should cost little more than the interpreter's start.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import quote, urlsplit

from nebula.errors import ProviderError
from nebula.kinds.dns.types import (
    MANAGED_TYPES,
    OWNER_ACCOUNT,
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

_TARGET_AT = {"CNAME": 0, "MX": 1, "SRV": 3}
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(\d{3}|.)")
_TXT_CHUNK = 255


class PowerDnsProvider:
    name: ClassVar[str] = "powerdns"
    capabilities: ClassVar[Capabilities] = Capabilities(
        record_types=MANAGED_TYPES, proxied=False, needs_api_url=True
    )

    @classmethod
    def open(cls, account: ZoneAccount, token: str) -> Self:
        assert account.api_url is not None  # `needs_api_url`, checked on validation
        return cls(account.api_url, token, account.server_id)

    def __init__(
        self, api_url: str, api_key: str, server_id: str = "localhost", timeout: float = 30.0
    ) -> None:
        self.api_url = api_url.rstrip("/")
        url = urlsplit(self.api_url)
        self._base = f"{url.path}/api/v1/servers/{quote(server_id, safe='')}"
        self._headers = {"X-API-Key": api_key, "Accept": "application/json"}
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._connection = kind(url.hostname or "localhost", url.port, timeout=timeout)

    def close(self) -> None:
        self._connection.close()

    # -- read ------------------------------------------------------------------------------

    def read(self, zone: str) -> ZoneState:
        response = self._request(zone, "GET", f"/zones/{zone}.")
        if response.status_code == 404 or (
            response.status_code == 422 and "could not find" in _error(response).lower()
        ):
            return ZoneState(zone, exists=False)
        self._check(zone, response, "reading the zone")
        data = response.json()
        rrsets = []
        for raw in data.get("rrsets", []):
            records = [r["content"] for r in raw.get("records", []) if not r.get("disabled")]
            if not records:
                continue  # a comment without records
            kind = raw["type"]
            rrsets.append(
                ObservedRRSet(
                    name=raw["name"].rstrip(".").lower(),
                    type=kind,
                    ttl=int(raw.get("ttl", 0)),
                    values=tuple(sorted(from_content(kind, c) for c in records)),
                    owned=_owned(raw.get("comments")),
                )
            )
        return ZoneState(zone, True, tuple(sorted(rrsets, key=lambda r: r.key)), data.get("id"))

    # -- write -----------------------------------------------------------------------------

    def apply(self, plan: ZonePlan) -> list[ChangeFailure]:
        zone = plan.zone
        pending = plan.pending
        if plan.create_zone:
            body = {
                "name": f"{zone}.",
                "kind": "Native",
                "nameservers": [],
                "rrsets": [_rrset(c, with_changetype=False) for c in pending],
            }
            response = self._request(zone, "POST", "/zones", json=body)
            if response.status_code == 201:
                self._flush(zone)
                return []
            if not _refused(response) or not pending:
                self._check(zone, response, "creating the zone")
            # One record set was refused: create the zone empty, then isolate the culprit.
            self._check(
                zone,
                self._request(zone, "POST", "/zones", json={**body, "rrsets": []}),
                "creating the zone",
            )
            self._flush(zone)
        elif not pending:
            return []
        else:
            response = self._patch(zone, pending)
            if response.status_code == 204:
                return []
            if not _refused(response):
                self._check(zone, response, "writing the zone")
        failures = []
        for change in pending:
            response = self._patch(zone, [change])
            if response.status_code != 204:
                if not _refused(response):
                    self._check(zone, response, "writing the zone")
                failures.append(ChangeFailure(change, f"PowerDNS refused it: {_error(response)}"))
        return failures

    def _flush(self, zone: str) -> None:
        """Drop what PowerDNS cached while the zone did not exist (its refusals would be
        served for up to a minute); edits of an existing zone purge its cache themselves."""
        self._check(
            zone,
            self._request(zone, "PUT", "/cache/flush", query=f"domain={quote(zone)}."),
            "flushing the cache",
        )

    def _patch(self, zone: str, changes: list[DnsChange] | tuple[DnsChange, ...]) -> _Response:
        body = {"rrsets": [_rrset(c, with_changetype=True) for c in changes]}
        return self._request(zone, "PATCH", f"/zones/{zone}.", json=body)

    # -- HTTP ------------------------------------------------------------------------------

    def _request(
        self,
        zone: str,
        method: str,
        path: str,
        json: Any = None,
        *,
        query: str = "",
        retry: bool = True,
    ) -> _Response:
        body = None if json is None else _dumps(json)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            target = self._base + quote(path) + (f"?{query}" if query else "")
            self._connection.request(method, target, body=body, headers=headers)
            answer = self._connection.getresponse()
            return _Response(answer.status, answer.reason, answer.read())
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self._connection.close()  # a kept-alive connection the server closed: once more
            if retry:
                return self._request(zone, method, path, json, query=query, retry=False)
            raise ProviderError(
                f"zone {zone}", f"PowerDNS API at {self.api_url} closed the connection"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            raise ProviderError(
                f"zone {zone}", f"PowerDNS API at {self.api_url} is unreachable: {exc}"
            ) from None

    def _check(self, zone: str, response: _Response, doing: str) -> None:
        if response.is_success:
            return
        if response.status_code in (401, 403):
            cause = "PowerDNS refused the API key (check the account's token secret)"
        else:
            cause = f"PowerDNS answered {response.status_code}: {_error(response)}"
        temporary = response.status_code >= 500 or response.status_code == 429
        raise ProviderError(f"zone {zone}", f"{doing}: {cause}", temporary=temporary)


@dataclass(frozen=True)
class _Response:
    status_code: int
    reason_phrase: str
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _refused(response: _Response) -> bool:
    """PowerDNS rejected the data (not the caller, not itself)."""
    return response.status_code in (400, 422)


def _error(response: _Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return str(body)[:300]


def _owned(comments: object) -> bool:
    if not isinstance(comments, list):
        return False
    return any(
        isinstance(c, dict)
        and (c.get("account") == OWNER_ACCOUNT or c.get("content") == OWNER_COMMENT)
        for c in comments
    )


def _rrset(change: DnsChange, *, with_changetype: bool) -> dict[str, Any]:
    name = f"{change.name}."
    if change.action is DnsAction.DELETE:
        return {"name": name, "type": change.type, "changetype": "DELETE"}
    assert change.desired is not None  # create and update carry what is desired
    rrset: dict[str, Any] = {
        "name": name,
        "type": change.type,
        "ttl": change.desired.ttl,
        "records": [
            {"content": to_content(change.type, v), "disabled": False}
            for v in change.desired.values
        ],
        "comments": [{"content": OWNER_COMMENT, "account": OWNER_ACCOUNT}],
    }
    if with_changetype:
        rrset["changetype"] = "REPLACE"
    return rrset


def to_content(kind: str, value: str) -> str:
    """Canonical data → PowerDNS content (absolute targets end in a dot, TXT is quoted)."""
    if kind == "TXT":
        raw = value.encode()
        chunks = [raw[i : i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)] or [b""]
        return " ".join(_quote(chunk.decode(errors="replace")) for chunk in chunks)
    if kind in _TARGET_AT:
        words = value.split()
        at = _TARGET_AT[kind]
        if words[at] != ".":
            words[at] += "."
        return " ".join(words)
    return value


def from_content(kind: str, content: str) -> str:
    """PowerDNS content → canonical data (the inverse of `to_content`)."""
    if kind == "TXT":
        parts = _QUOTED.findall(content)
        if not parts:
            return content
        return "".join(_ESCAPE.sub(_unescape, p) for p in parts)
    if kind in _TARGET_AT:
        words = content.split()
        at = _TARGET_AT[kind]
        if at < len(words) and words[at] != ".":
            words[at] = words[at].rstrip(".").lower()
        return " ".join(words)
    if kind == "CAA":
        flags, tag, rest = content.split(None, 2)
        return f"{flags} {tag.lower()} {rest}"
    return content


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unescape(match: re.Match[str]) -> str:
    escaped = match[1]
    return chr(int(escaped)) if escaped.isdigit() else escaped
