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
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

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


def verify_and_parse(headers: Mapping[str, str], body: bytes, secret: str) -> PushEvent | None:
    """Verify a webhook request and return its push, or None for a valid non-push event (ping).

    `headers` may use any case. Raises `WebhookError` for an unknown sender, a missing or bad
    signature or token (status 401), and a payload without JSON or without a ref (status 400).
    """
    h = {name.lower(): value for name, value in headers.items()}
    if not secret:
        raise WebhookError("no webhook secret is configured: refusing every webhook", 403)
    provider = _sender(h)
    if provider == "gitlab":
        _check_token(h, secret)
        event = h.get("x-gitlab-event", "")
    else:
        _check_signature(h, body, secret, provider)
        names = (f"x-{provider}-event", "x-gitea-event", "x-github-event")
        event = next((h[n] for n in names if n in h), "")
    if provider != "gitlab" and event != "push":
        return None  # ping, and every event that is not a push: accepted, nothing to sync
    payload = _payload(h, body)
    if provider == "gitlab" and not _gitlab_push(event, payload):
        return None
    return _push(provider, payload)


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


def _check_token(h: Mapping[str, str], secret: str) -> None:
    token = h.get("x-gitlab-token")
    if token is None:
        raise WebhookError("missing X-Gitlab-Token: set the webhook's secret token in GitLab")
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise WebhookError("bad X-Gitlab-Token: it does not match the configured secret")


def _check_signature(h: Mapping[str, str], body: bytes, secret: str, provider: str) -> None:
    names = _SIGNATURE_HEADERS[provider]
    name = next((n for n in names if n.lower() in h), None)
    if name is None:
        wanted = " or ".join(names)
        raise WebhookError(f"missing signature: no {wanted} header (set the webhook's secret)")
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
    try:
        text = body.decode("utf-8")
        if h.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            text = parse_qs(text).get("payload", [""])[0]
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookError("malformed payload: the body is not JSON", 400) from None
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
