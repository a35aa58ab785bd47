"""Read-only calls to the Docker Engine API over plain HTTP, without the docker SDK.

Planning an unchanged homelab is three list requests. Importing the docker SDK (and requests
under it) costs more than those requests and everything else a no-op plan does, so reads on
`unix://` and plain `tcp://` engines go through `http.client` here; the SDK is imported only when
something is to be changed, and serves every other kind of endpoint (TLS, ssh).
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote, urlsplit

from nebula.errors import ProviderError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class EngineReader:
    """GETs JSON from the engine over one kept-alive connection."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        parts = urlsplit(base_url)
        if parts.scheme == "unix":
            self._connection: http.client.HTTPConnection = _UnixConnection(parts.path, timeout)
        else:
            self._connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)

    @staticmethod
    def supports(base_url: str, environ: dict[str, str]) -> bool:
        scheme = urlsplit(base_url).scheme
        return scheme == "unix" or (
            scheme in ("tcp", "http") and not environ.get("DOCKER_TLS_VERIFY")
        )

    def get(self, path: str, filters: dict[str, list[str]] | None = None) -> Any:
        if filters:
            path += ("&" if "?" in path else "?") + "filters=" + quote(json.dumps(filters))
        try:
            try:
                response, body = self._request(path)
            except (OSError, http.client.HTTPException):
                # a kept-alive connection the engine closed (it restarted): once more, afresh
                self._connection.close()
                response, body = self._request(path)
        except OSError as exc:
            self._connection.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"cannot connect ({reason})"
            ) from None
        except http.client.HTTPException as exc:
            self._connection.close()
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"bad response: {exc}"
            ) from None
        if response.status != 200:
            try:
                message = json.loads(body).get("message", "")
            except ValueError:
                message = body.decode(errors="replace")
            raise ProviderError(
                f"Docker Engine at {self.base_url}", f"GET {path}: {response.status} {message}"
            )
        return json.loads(body)

    def _request(self, path: str) -> tuple[http.client.HTTPResponse, bytes]:
        self._connection.request("GET", path)
        response = self._connection.getresponse()
        return response, response.read()

    def close(self) -> None:
        self._connection.close()
