"""A local stand-in for Cloudflare's v4 API, for the parts Nebula's DNS provider uses.

There is no route to the real API from the test machines, so this server speaks the protocol
the official SDK speaks, as Cloudflare documents it:

- every answer is the envelope `{success, errors, messages, result}` (plus `result_info` on
  lists); errors are `{code, message}` objects with Cloudflare's codes: 10000 authentication
  error (HTTP 403) for a wrong token, 7003 no such zone, 81044 no such record, 81053/81054 a
  CNAME beside another record at one name, 81058 an identical record, 9005/9006 bad
  addresses, 9004 a type that cannot be proxied, 9021 a bad TTL (HTTP 400);
- `GET /zones?name=` and `GET /zones/{id}/dns_records` page with `page`/`per_page` (default
  100) and answer `result_info` {page, per_page, count, total_count, total_pages}; a page past
  the end is empty;
- records: create (POST), read, PATCH, PUT, DELETE, with `comment`, `tags`, `proxied`, TTL
  1 (automatic) or 60..86400, MX `priority`, SRV and CAA `data`;
- `POST /zones/{id}/dns_records/batch`: deletes, patches, puts, posts, executed in that order
  in one transaction: the first error rejects the whole batch, nothing is changed;
- rate limiting: `throttle(n, retry_after)` answers the next `n` requests with HTTP 429,
  `Retry-After` and error 971, as Cloudflare does when a client goes too fast (after letting
  `after` requests through, so a sync can be throttled in its middle).

Every request is logged in `requests` (method, path, query) for tests that count them.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import Any
from urllib.parse import parse_qs, urlsplit

PROXIABLE = {"A", "AAAA", "CNAME"}


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _State:
    token: str
    zones: dict[str, str] = field(default_factory=dict)  # id -> name
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # zone -> id -> rec
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    throttled: int = 0
    throttle_after: int = 0
    retry_after: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


class CloudflareDouble:
    """The running double: `url` is the API base (like https://api.cloudflare.com/client/v4)."""

    def __init__(self, state: _State, url: str) -> None:
        self._state = state
        self.url = url

    @property
    def token(self) -> str:
        return self._state.token

    @property
    def requests(self) -> list[tuple[str, str, dict[str, list[str]]]]:
        return self._state.requests

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        with self._state.lock:
            self._state.zones[zone_id] = name
            self._state.records[zone_id] = {}
        return zone_id

    def zone_id(self, name: str) -> str:
        return next(i for i, n in self._state.zones.items() if n == name)

    def records(self, zone: str) -> list[dict[str, Any]]:
        return list(self._state.records[self.zone_id(zone)].values())

    def add_record(self, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        """A record made by hand (as in Cloudflare's dashboard)."""
        zone_id = self.zone_id(zone)
        with self._state.lock:
            return _create(self._state, zone_id, body)

    def throttle(self, count: int, retry_after: int = 1, after: int = 0) -> None:
        """Let `after` requests through, then answer `count` with 429 and `Retry-After`."""
        with self._state.lock:
            self._state.throttled = count
            self._state.retry_after = retry_after
            self._state.throttle_after = after

    def clear(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
            for zone_id in self._state.records:
                self._state.records[zone_id] = {}


@contextlib.contextmanager
def cloudflare_double(token: str = "test-token") -> Iterator[CloudflareDouble]:
    state = _State(token)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="cloudflare-double", daemon=True)
    thread.start()
    try:
        yield CloudflareDouble(state, f"http://127.0.0.1:{server.server_address[1]}/client/v4")
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state = self.state
        with state.lock:
            state.requests.append((method, url.path, query))
            if state.throttled > 0 and state.throttle_after > 0:
                state.throttle_after -= 1
            elif state.throttled > 0:
                state.throttled -= 1
                self._send(
                    429,
                    _envelope(
                        None, [(971, "Please wait and consider throttling your request speed")]
                    ),
                    {"Retry-After": str(state.retry_after)},
                )
                return
            try:
                if self.headers.get("Authorization") != f"Bearer {state.token}":
                    raise ApiError(403, 10000, "Authentication error")
                body = json.loads(raw) if raw else {}
                status, payload = _route(state, method, url.path, query, body)
            except ApiError as exc:
                status, payload = exc.status, _envelope(None, [(exc.code, exc.message)])
            except (ValueError, KeyError, TypeError) as exc:
                status, payload = 400, _envelope(None, [(9207, f"Request body is invalid: {exc}")])
        self._send(status, payload)

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _envelope(
    result: Any, errors: list[tuple[int, str]] | None = None, info: dict[str, int] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "success": not errors,
        "errors": [{"code": c, "message": m} for c, m in errors or []],
        "messages": [],
        "result": result,
    }
    if info is not None:
        out["result_info"] = info
    return out


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    page = int(query.get("page", ["1"])[0])
    per_page = int(query.get("per_page", ["100"])[0])
    if page < 1 or not 5 <= per_page <= 5_000_000:
        raise ApiError(400, 1004, "Invalid page or per_page")
    chunk = items[(page - 1) * per_page : page * per_page]
    total_pages = (len(items) + per_page - 1) // per_page
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": total_pages,
    }
    return _envelope(chunk, info=info)


_ZONE = re.compile(r"/client/v4/zones/(?P<zone>[^/]+)(?P<rest>/.*)?$")


def _route(
    state: _State, method: str, path: str, query: dict[str, list[str]], body: Any
) -> tuple[int, dict[str, Any]]:
    if path == "/client/v4/zones" and method == "GET":
        name = query.get("name", [None])[0]
        zones = [
            {"id": i, "name": n, "status": "active", "type": "full"}
            for i, n in state.zones.items()
            if name is None or n == name
        ]
        return 200, _page(zones, query)
    match = _ZONE.match(path)
    if match is None:
        raise ApiError(400, 7000, "No route for that URI")
    zone_id, rest = match["zone"], match["rest"] or ""
    if zone_id not in state.zones:
        raise ApiError(
            404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?"
        )
    records = state.records[zone_id]
    if rest == "/dns_records" and method == "GET":
        found = sorted(records.values(), key=lambda r: (r["name"], r["type"], r["created_on"]))
        for key in ("name", "type", "content"):
            if key in query:
                found = [r for r in found if r[key] == query[key][0]]
        return 200, _page(found, query)
    if rest == "/dns_records" and method == "POST":
        return 200, _envelope(_create(state, zone_id, body))
    if rest == "/dns_records/batch" and method == "POST":
        return 200, _envelope(_batch(state, zone_id, body))
    record = re.fullmatch(r"/dns_records/([^/]+)", rest)
    if record is None:
        raise ApiError(400, 7000, "No route for that URI")
    record_id = record[1]
    if record_id not in records:
        raise ApiError(404, 81044, "Record does not exist.")
    if method == "GET":
        return 200, _envelope(records[record_id])
    if method == "DELETE":
        del records[record_id]
        return 200, _envelope({"id": record_id})
    if method in ("PATCH", "PUT"):
        return 200, _envelope(_edit(state, zone_id, record_id, body, replace=method == "PUT"))
    raise ApiError(405, 10405, "Method not allowed")


def _batch(state: _State, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Deletes, patches, puts, posts in one transaction: any error leaves the zone as it was."""
    saved = {k: dict(v) for k, v in state.records[zone_id].items()}
    try:
        result: dict[str, list[dict[str, Any]]] = {
            "deletes": [],
            "patches": [],
            "puts": [],
            "posts": [],
        }
        for item in body.get("deletes") or []:
            if item["id"] not in state.records[zone_id]:
                raise ApiError(404, 81044, "Record does not exist.")
            result["deletes"].append(state.records[zone_id].pop(item["id"]))
        for item in body.get("patches") or []:
            result["patches"].append(_edit(state, zone_id, item["id"], item, replace=False))
        for item in body.get("puts") or []:
            result["puts"].append(_edit(state, zone_id, item["id"], item, replace=True))
        for item in body.get("posts") or []:
            result["posts"].append(_create(state, zone_id, item))
        return result
    except (ApiError, KeyError):
        state.records[zone_id] = saved
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _create(state: _State, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
    record = {
        "id": uuid.uuid4().hex,
        "zone_id": zone_id,
        "zone_name": state.zones[zone_id],
        "created_on": _now(),
        "tags": [],
        "comment": None,
        "settings": {},
        "meta": {},
        "proxied": False,
        "ttl": 1,
    }
    record.update(_fields(body))
    _validate(state, zone_id, record, None)
    state.records[zone_id][record["id"]] = record
    return record


def _edit(
    state: _State, zone_id: str, record_id: str, body: dict[str, Any], *, replace: bool
) -> dict[str, Any]:
    records = state.records[zone_id]
    if record_id not in records:
        raise ApiError(404, 81044, "Record does not exist.")
    old = records[record_id]
    keep = ("id", "zone_id", "zone_name", "created_on")
    record = {k: old[k] for k in keep} if replace else dict(old)
    if replace:
        record.update(
            {"tags": [], "comment": None, "settings": {}, "meta": {}, "proxied": False, "ttl": 1}
        )
    record.update(_fields(body))
    _validate(state, zone_id, record, record_id)
    records[record_id] = record
    return record


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: body[k]
        for k in (
            "name",
            "type",
            "content",
            "ttl",
            "proxied",
            "comment",
            "tags",
            "priority",
            "data",
        )
        if k in body
    }
    if "name" in out:
        out["name"] = str(out["name"]).lower().rstrip(".")
    data = out.get("data")
    if out.get("type") == "SRV" and isinstance(data, dict):
        out["priority"] = data["priority"]
        out["content"] = f"{data['weight']} {data['port']} {data['target']}"
    if out.get("type") == "CAA" and isinstance(data, dict):
        out["content"] = f'{data["flags"]} {data["tag"]} "{data["value"]}"'
    out["modified_on"] = _now()
    return out


def _validate(state: _State, zone_id: str, record: dict[str, Any], own_id: str | None) -> None:
    kind, content, name = record.get("type"), record.get("content"), record.get("name")
    if not kind or not name or content is None:
        raise ApiError(400, 9000, "DNS name, type and content are required")
    zone = state.zones[zone_id]
    if name != zone and not name.endswith("." + zone):
        raise ApiError(
            400, 9005 if kind == "A" else 1004, f"Record name {name} is outside the zone {zone}"
        )
    try:
        if kind == "A":
            IPv4Address(content)
        elif kind == "AAAA":
            IPv6Address(content)
    except AddressValueError:
        code = 9005 if kind == "A" else 9006
        raise ApiError(
            400,
            code,
            f"Content for {kind} record is invalid. Must be a valid IPv{4 if kind == 'A' else 6} address.",
        ) from None
    ttl = record.get("ttl")
    if not isinstance(ttl, int) or not (ttl == 1 or 60 <= ttl <= 86400):
        raise ApiError(
            400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
        )
    if record.get("proxied") and kind not in PROXIABLE:
        raise ApiError(400, 9004, "This record type cannot be proxied.")
    record["proxiable"] = kind in PROXIABLE
    for other_id, other in state.records[zone_id].items():
        if other_id == own_id or other["name"] != name:
            continue
        if kind == "CNAME" or other["type"] == "CNAME":
            if kind == "CNAME" and other["type"] == "CNAME":
                raise ApiError(400, 81054, "A CNAME record with that host already exists.")
            raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
        if (
            other["type"] == kind
            and other["content"] == content
            and other.get("priority") == record.get("priority")
        ):
            raise ApiError(400, 81058, "A record with the same settings already exists.")
