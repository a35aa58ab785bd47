"""Push webhooks from GitHub, Gitea, Forgejo and GitLab: verify the sender, read the push.

Pure functions over (headers, raw body, secret), so any HTTP layer can call them:

    try:
        event = verify_and_parse(request.headers, await request.body(), secret)
    except WebhookError as exc:
        return Response(exc.reason, status_code=exc.status)    # logged by the caller
    if event is not None and event.branch == source.branch:
        trigger_sync()

How each sender proves itself (every comparison is constant-time):
- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`; `X-GitHub-Event`.
- Gitea / Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature`, the bare hex HMAC-SHA256, and
  `X-Hub-Signature-256` as GitHub does; `X-Gitea-Event` / `X-Forgejo-Event`. Gitea also sends
  GitHub's headers, so its own headers are looked at first.
- GitLab: `X-Gitlab-Token` carries the secret itself; `X-Gitlab-Event: Push Hook`.
The signature covers the exact bytes received: pass the body before any decoding. A sender
without a secret configured is refused, and no message ever contains the secret or a digest.

`precheck(headers, secret)` refuses, before the body is read, a request no secret could verify:
no known sender, no secret configured, no signature header, or a wrong GitLab token. An HTTP
layer then reads the body, `verify`s its signature, and only then asks `Deliveries` whether it
was delivered before: a forged request learns nothing of what was delivered and never takes a
real delivery's place. `Deliveries` lives in memory (the newest 4,096), so a replay after a
restart is let through: it asks for a sync of the branch as it is, which changes nothing when
that is applied already.

`BodyTurns` gives the turns to read a signed body: a few at once per listener, and one per
client, so a client trickling forged bodies holds one turn at most, not all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

from nebula.daemon.jsonbody import BodyError, loads
from nebula.errors import NebulaError

Provider = Literal["github", "gitea", "forgejo", "gitlab"]

_ZERO_SHA = frozenset({"0" * 40, "0" * 64})
_GITLAB_PUSH_EVENTS = frozenset({"Push Hook", "Tag Push Hook"})
_GITLAB_PUSH_KINDS = frozenset({"push", "tag_push"})
_HUB = "X-Hub-Signature-256"  # GitHub's header, `sha256=<hex>`; the others are bare hex
# Which headers sign the body, in the order they are tried.
_SIGNATURE_HEADERS: dict[str, tuple[str, ...]] = {
    "github": (_HUB,),
    "gitea": ("X-Gitea-Signature", _HUB),
    "forgejo": ("X-Forgejo-Signature", "X-Gitea-Signature", _HUB),
}
# Which header names a delivery (a redelivery keeps it), in the order tried.
_DELIVERY_HEADERS: dict[str, tuple[str, ...]] = {
    "github": ("x-github-delivery",),
    "gitea": ("x-gitea-delivery", "x-github-delivery"),
    "forgejo": ("x-forgejo-delivery", "x-gitea-delivery", "x-github-delivery"),
    "gitlab": ("idempotency-key", "x-gitlab-event-uuid"),
}


class WebhookError(NebulaError):
    """A webhook was refused. `reason` is safe to log and return; `status` is the HTTP code."""

    def __init__(self, reason: str, status: int = 401) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)


@dataclass(frozen=True)
class PushEvent:
    """A verified push. `branch` is None for a tag push; `sha` is None when a ref is deleted."""

    provider: Provider
    ref: str
    branch: str | None
    sha: str | None
    pusher: str | None


def precheck(headers: Mapping[str, str], secret: str) -> None:
    """Refuse, from its headers alone, a request `secret` could not verify: no known sender, no
    secret configured, no signature, or a GitLab token that is not the secret (GitLab's proof
    is in a header). Raises `WebhookError` as `verify_and_parse` would.
    """
    h = _lower(headers)
    provider = _sender(h)
    if not secret:
        raise WebhookError("no webhook secret is configured: refusing every webhook", 403)
    if provider == "gitlab":
        _check_token(h, secret)
    else:
        _proof(h, provider)


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Check that `body` comes from the sender `secret` names (see the module docstring)."""
    h = _lower(headers)
    precheck(h, secret)
    provider = _sender(h)
    if provider != "gitlab":
        _check_signature(h, body, secret, provider)


class Deliveries:
    """The deliveries accepted lately, by delivery id and by body digest (the signature covers
    only the body, so a replay may come with a fresh id); the newest `size` are kept.

        verify(headers, body, secret)            # never claim what is not verified
        keys = deliveries.claim(headers, body)   # None: a replay, do nothing
        ... act; when nothing was done: deliveries.release(keys)
    """

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def claim(self, headers: Mapping[str, str], body: bytes) -> list[str] | None:
        """Remember this delivery and return its keys; None when it was seen already."""
        keys = _delivery_keys(headers, body)
        with self._lock:
            if any(key in self._seen for key in keys):
                return None
            for key in keys:
                self._seen[key] = None
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return keys

    def release(self, keys: list[str]) -> None:
        """Forget a claimed delivery: it did nothing, so a retry may come."""
        with self._lock:
            for key in keys:
                self._seen.pop(key, None)


class NoTurnError(WebhookError):
    """No turn to read a webhook's body came in time (`BodyTurns`)."""

    def __init__(self) -> None:
        super().__init__("too many webhooks at once: try again shortly", 503)


@dataclass
class _Client:
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # requests holding or waiting for its turn


class BodyTurns:
    """Turns to read a webhook body: at most `slots` at once, and one per client (an address;
    an IPv6 one by its /64, which one host may own whole). A request waits at most `wait`
    seconds for its turn:

        async with turns.turn(address):   # NoTurnError: none came in time
            body = ...
    """

    def __init__(self, slots: int, wait: float) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._clients: dict[str, _Client] = {}
        self.wait = wait

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        key = _client_key(address)
        client = self._clients.setdefault(key, _Client())
        client.users += 1
        try:
            await self._acquire(client)
            try:
                yield
            finally:
                self._slots.release()
                client.turn.release()
        finally:
            client.users -= 1
            if not client.users:
                del self._clients[key]

    async def _acquire(self, client: _Client) -> None:
        """The client's turn, then a slot, within `wait` seconds."""
        try:
            async with asyncio.timeout(self.wait):
                await client.turn.acquire()
                try:
                    await self._slots.acquire()
                except BaseException:  # timed out or cancelled: the client's next may go
                    client.turn.release()
                    raise
        except TimeoutError:
            raise NoTurnError() from None


def _client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address: the unix socket
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _delivery_keys(headers: Mapping[str, str], body: bytes) -> list[str]:
    h = _lower(headers)
    provider = _sender(h)
    keys = [f"body:{_event(h, provider)}:{hashlib.sha256(body).hexdigest()}"]
    delivery = next((h[n].strip() for n in _DELIVERY_HEADERS[provider] if h.get(n)), None)
    if delivery:
        keys.append(f"{provider}:{delivery}")
    return keys


def verify_and_parse(headers: Mapping[str, str], body: bytes, secret: str) -> PushEvent | None:
    """Verify a webhook request and return its push, or None for a valid non-push event (ping).

    `headers` may use any case. Raises `WebhookError` for an unknown sender, a missing or bad
    signature or token (status 401), and a payload without JSON or without a ref (status 400).
    """
    h = _lower(headers)
    verify(h, body, secret)
    provider = _sender(h)
    event = _event(h, provider)
    if provider != "gitlab" and event != "push":
        return None  # ping, and every event that is not a push: accepted, nothing to sync
    payload = _payload(h, body)
    if provider == "gitlab" and not _gitlab_push(event, payload):
        return None
    return _push(provider, payload)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _sender(h: Mapping[str, str]) -> Provider:
    if "x-gitlab-event" in h or "x-gitlab-token" in h:
        return "gitlab"
    if "x-forgejo-event" in h or "x-forgejo-signature" in h:
        return "forgejo"
    if "x-gitea-event" in h or "x-gitea-signature" in h:
        return "gitea"
    if "x-github-event" in h:
        return "github"
    raise WebhookError(
        "unknown sender: no X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event "
        "header",
        400,
    )


def _event(h: Mapping[str, str], provider: Provider) -> str:
    names = (
        ("x-gitlab-event",)
        if provider == "gitlab"
        else (f"x-{provider}-event", "x-gitea-event", "x-github-event")
    )
    return next((h[n] for n in names if n in h), "")


def _proof(h: Mapping[str, str], provider: Provider) -> str:
    """The header that proves the sender: GitLab's token, or the first signature header."""
    if provider == "gitlab":
        if "x-gitlab-token" not in h:
            raise WebhookError("missing X-Gitlab-Token: set the webhook's secret token in GitLab")
        return "X-Gitlab-Token"
    names = _SIGNATURE_HEADERS[provider]
    name = next((n for n in names if n.lower() in h), None)
    if name is None:
        wanted = " or ".join(names)
        raise WebhookError(f"missing signature: no {wanted} header (set the webhook's secret)")
    return name


def _check_token(h: Mapping[str, str], secret: str) -> None:
    token = h[_proof(h, "gitlab").lower()]
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise WebhookError("bad X-Gitlab-Token: it does not match the configured secret")


def _check_signature(h: Mapping[str, str], body: bytes, secret: str, provider: Provider) -> None:
    name = _proof(h, provider)
    given = h[name.lower()].strip()
    if name == _HUB:
        if not given.startswith("sha256="):
            raise WebhookError(f"bad signature: {name} does not start with 'sha256='")
        given = given.removeprefix("sha256=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise WebhookError(
            f"bad signature in {name}: the body was not signed with the configured secret"
        )


def _payload(h: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The JSON payload; GitHub may also send it form-encoded as `payload=<json>`."""
    raw: bytes | str = body
    try:
        if h.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raw = parse_qs(body.decode("utf-8")).get("payload", [""])[0]
        payload = loads(raw)
    except UnicodeDecodeError:
        raise WebhookError("malformed payload: the body is not UTF-8", 400) from None
    except BodyError as exc:
        raise WebhookError(f"malformed payload: {exc}", 400) from None
    if not isinstance(payload, dict):
        raise WebhookError("malformed payload: the JSON is not an object", 400)
    return payload


def _gitlab_push(event: str, payload: Mapping[str, Any]) -> bool:
    """GitLab names pushes in the event header, or in `object_kind` for system hooks."""
    if event in _GITLAB_PUSH_EVENTS:
        return True
    kind = payload.get("object_kind") or payload.get("event_name")
    return event == "System Hook" and kind in _GITLAB_PUSH_KINDS


def _push(provider: Provider, payload: Mapping[str, Any]) -> PushEvent:
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref:
        raise WebhookError("malformed payload: the push has no ref", 400)
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    after = payload.get("after")
    sha = after if isinstance(after, str) and after and after not in _ZERO_SHA else None
    return PushEvent(provider, ref, branch or None, sha, _pusher(provider, payload))


def _pusher(provider: Provider, payload: Mapping[str, Any]) -> str | None:
    """Who pushed: the account name where the sender gives one, else the display name."""
    if provider == "gitlab":
        candidates = [payload.get("user_username"), payload.get("user_name")]
    else:
        pusher, sender = payload.get("pusher"), payload.get("sender")
        pusher = pusher if isinstance(pusher, Mapping) else {}
        sender = sender if isinstance(sender, Mapping) else {}
        keys = ("name",) if provider == "github" else ("login", "username", "full_name")
        candidates = [*(pusher.get(k) for k in keys), sender.get("login")]
    return next((c for c in candidates if isinstance(c, str) and c), None)
