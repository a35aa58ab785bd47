"""A local stand-in for Discord's webhook API (Execute Webhook), as Discord documents it.

There is no route to discord.com from the test machines, so this server answers what a client
of `POST /api/webhooks/{webhook.id}/{webhook.token}` meets:

- a JSON body with `content` (at most 2000 characters) and/or `embeds` (at most 10) posts a
  message: 204 No Content, or 200 with the message object when `?wait=true`;
- an unknown webhook: 404 `{"message": "Unknown Webhook", "code": 10015}`; a known one with a
  wrong token: 401 `{"message": "Invalid Webhook Token", "code": 50027}`; nothing to post: 400
  `{"message": "Cannot send an empty message", "code": 50006}`;
- every answer carries the webhook bucket's `X-RateLimit-Limit/Remaining/Reset/Reset-After/
  Bucket` headers; `throttle(retry_after)` makes the next request exceed the limit: 429 with
  `{"message": "You are being rate limited.", "retry_after": ..., "global": false}`,
  `Retry-After` and `X-RateLimit-Scope: user`, and, like Discord, every request before
  `retry_after` has passed is refused the same way.

Time is the double's `clock` (injectable), so a test can let time pass without waiting.
Posted messages are in `messages`; every request and its status in `requests`.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIMIT = 5  # requests per bucket window, as Discord answers for a webhook


@dataclass
class _State:
    clock: Callable[[], float]
    webhooks: dict[str, str] = field(default_factory=dict)  # id -> token
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)  # path, status answered
    throttle_next: float | None = None  # retry_after for the next request
    limited_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class DiscordDouble:
    """The running double: `api` is the webhooks base (like https://discord.com/api/webhooks)."""

    def __init__(self, state: _State, api: str) -> None:
        self._state = state
        self.api = api

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._state.messages

    @property
    def requests(self) -> list[tuple[str, int]]:
        return self._state.requests

    def add_webhook(self, webhook_id: str, token: str) -> None:
        with self._state.lock:
            self._state.webhooks[webhook_id] = token

    def throttle(self, retry_after: float) -> None:
        """The next request exceeds the rate limit, which then lasts `retry_after` seconds."""
        with self._state.lock:
            self._state.throttle_next = retry_after


@contextlib.contextmanager
def discord_double(clock: Callable[[], float] = time.time) -> Iterator[DiscordDouble]:
    state = _State(clock)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="discord-double", daemon=True)
    thread.start()
    try:
        yield DiscordDouble(state, f"http://127.0.0.1:{server.server_address[1]}/api/webhooks")
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state = self.state
        with state.lock:
            now = state.clock()
            if state.throttle_next is not None:
                state.limited_until, state.throttle_next = now + state.throttle_next, None
            if now < state.limited_until:
                status, payload = self._limited(state.limited_until - now)
            else:
                status, payload = _execute(state, url.path, parse_qs(url.query), raw)
                self._headers = _bucket(now, remaining=LIMIT - 1, reset_after=1.0)
            state.requests.append((url.path, status))
        self._send(status, payload)

    def _limited(self, retry_after: float) -> tuple[int, dict[str, Any]]:
        self._headers = {
            **_bucket(self.state.clock(), remaining=0, reset_after=retry_after),
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Scope": "user",
        }
        message = "You are being rate limited."
        return 429, {"message": message, "retry_after": round(retry_after, 3), "global": False}

    def _send(self, status: int, payload: dict[str, Any] | None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in self._headers.items():
            self.send_header(key, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _bucket(now: float, *, remaining: int, reset_after: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(LIMIT),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{now + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": "0a6b8c2d4e",
    }


def _execute(
    state: _State, path: str, query: dict[str, list[str]], raw: bytes
) -> tuple[int, dict[str, Any] | None]:
    parts = path.strip("/").split("/")
    if len(parts) != 4 or parts[:2] != ["api", "webhooks"]:
        return 404, {"message": "404: Not Found", "code": 0}
    webhook_id, token = parts[2], parts[3]
    if webhook_id not in state.webhooks:
        return 404, {"message": "Unknown Webhook", "code": 10015}
    if state.webhooks[webhook_id] != token:
        return 401, {"message": "Invalid Webhook Token", "code": 50027}
    try:
        body = json.loads(raw)
    except ValueError:
        return 400, {"message": "The request body contains invalid JSON.", "code": 50109}
    content, embeds = body.get("content") or "", body.get("embeds") or []
    if not content and not embeds:
        return 400, {"message": "Cannot send an empty message", "code": 50006}
    if len(content) > 2000 or len(embeds) > 10:
        return 400, {"message": "Invalid Form Body", "code": 50035}
    message = {"id": str(len(state.messages) + 1), "webhook_id": webhook_id, **body}
    state.messages.append(message)
    return (200, message) if query.get("wait") == ["true"] else (204, None)
