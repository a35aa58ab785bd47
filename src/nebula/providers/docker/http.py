"""Read-only calls to the Docker Engine API over plain HTTP, without the docker SDK.

Planning an unchanged homelab is three list requests. Importing the docker SDK (and requests
under it) costs more than those requests and everything else a no-op plan does, so reads on
`unix://` and plain `tcp://` engines go through `http.client` here; the SDK is imported only when
something is to be changed, and serves every other kind of endpoint (TLS, ssh).

An `http.client` connection carries one request at a time, and the daemon reads from many
threads at once (API requests, health checks, the sync), so each request borrows a kept-alive
connection from a small pool and gives it back once its response is read: a thread never reads
another's response.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any
from urllib.parse import quote, urlsplit

from nebula.errors import ProviderError

_KEEP_IDLE = 8  # kept-alive connections kept for reuse; more readers at once get their own


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class EngineReader:
    """GETs JSON from the engine over kept-alive connections, one per request in flight."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        self._timeout = timeout
        self._parts = urlsplit(base_url)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @staticmethod
    def supports(base_url: str, environ: dict[str, str]) -> bool:
        scheme = urlsplit(base_url).scheme
        return scheme == "unix" or (
            scheme in ("tcp", "http") and not environ.get("DOCKER_TLS_VERIFY")
        )

    def get(self, path: str, filters: dict[str, list[str]] | None = None) -> Any:
        if filters:
            path += ("&" if "?" in path else "?") + "filters=" + quote(json.dumps(filters))
        connection, reused = self._borrow()
        try:
            try:
                response, body = _request(connection, path)
            except (ConnectionResetError, BrokenPipeError):  # RemoteDisconnected is one too
                if not reused:
                    raise
                # a kept-alive connection the engine closed meanwhile (it restarted): once more,
                # afresh; nothing else is retried (a timed-out read would wait twice as long)
                connection.close()
                response, body = _request(connection, path)
        except OSError as exc:
            connection.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"cannot connect ({reason})"
            ) from None
        except http.client.HTTPException as exc:
            connection.close()
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"bad response: {exc}"
            ) from None
        self._give_back(connection)
        if response.status != 200:
            try:
                message = json.loads(body).get("message", "")
            except ValueError:
                message = body.decode(errors="replace")
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"GET {path}: {response.status} {message}"
            )
        return json.loads(body)

    def _borrow(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it is a kept-alive one that served a request before."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        if self._parts.scheme == "unix":
            return _UnixConnection(self._parts.path, self._timeout), False
        return http.client.HTTPConnection(self._parts.netloc, timeout=self._timeout), False

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _KEEP_IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _request(
    connection: http.client.HTTPConnection, path: str
) -> tuple[http.client.HTTPResponse, bytes]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response, response.read()
