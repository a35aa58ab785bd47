"""Caddy's admin API: read the running config, load a new one whole.

`POST /load` replaces the whole config atomically: Caddy provisions the new config beside the
old one and switches only if it starts, with no downtime and no restart. Should a failed load
still leave Caddy with something other than the config it had (the admin endpoint moved, an app
half stopped), the previous config is loaded again before the error is raised.

The new config is the one read, with Nebula's parts replaced: a change someone else makes in
the milliseconds between the read and the load would be lost (Caddy 2.6's `/load` does not
honour `If-Match`, and its config ETag comes as an HTTP trailer).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from nebula.errors import ProviderError

_ROLLBACK_ATTEMPTS = 5  # ~3 s in all
_editing: dict[str, threading.Lock] = {}
_editing_guard = threading.Lock()


class CaddyAdmin:
    def __init__(self, admin_url: str, timeout: float = 30.0) -> None:
        self.url = admin_url.rstrip("/")
        # A plain-HTTP admin endpoint (the usual loopback one) needs no TLS: without `verify`
        # the client skips loading the CA bundle, most of the cost of opening it.
        secure = self.url.startswith("https://")
        self._client = httpx.Client(base_url=self.url, timeout=timeout, verify=secure)
        self.requests: list[str] = []  # "METHOD /path" of every request made, in order

    def editing(self) -> threading.Lock:
        """Held from reading the config to loading its edit: two writers in this process (a
        sync's routes, a project's deployment switching its route) never load an edit of a
        config the other has just replaced."""
        with _editing_guard:
            return _editing.setdefault(self.url, threading.Lock())

    @property
    def _resource(self) -> str:
        return f"Caddy admin API at {self.url}"

    def config(self) -> dict[str, Any]:
        """The running config (`{}` when Caddy runs none)."""
        response = self._request("GET", "/config/")
        if response.status_code != 200:
            raise ProviderError(self._resource, f"GET /config/: {_reason(response)}")
        data = response.json()
        return data if isinstance(data, dict) else {}

    def load(self, config: dict[str, Any], previous: dict[str, Any]) -> None:
        """Make `config` the running config; on failure Caddy keeps (or gets back) `previous`."""
        response = self._request("POST", "/load", json=config)
        if response.status_code == 200:
            return
        reason = _reason(response)
        restored = self._back_to(previous)
        kept = "the previous config is in force" if restored else "the previous config may be lost"
        raise ProviderError(self._resource, f"Caddy refused the new config ({kept}): {reason}")

    def _back_to(self, previous: dict[str, Any]) -> bool:
        """Whether `previous` runs again, loading it if Caddy's own rollback did not.

        While Caddy rolls back a refused config it may restart its admin listener, so the next
        request can find the connection closed: that is retried for a few seconds, not taken as
        the config being lost.
        """
        for attempt in range(_ROLLBACK_ATTEMPTS):
            try:
                if self.config() == previous:
                    return True
                return self._request("POST", "/load", json=previous).status_code == 200
            except ProviderError:
                time.sleep(0.2 * (attempt + 1))
        return False

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.requests.append(f"{method} {path}")
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ProviderError(
                self._resource, f"cannot connect ({exc or type(exc).__name__}); is Caddy running?"
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CaddyAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"{response.status_code} {response.text.strip()[:500]}"
    message = data.get("error") if isinstance(data, dict) else None
    return f"{response.status_code} {message or data}"
