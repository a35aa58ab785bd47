"""The routes kind's plain data: an exposed hostname and what it routes to."""

from __future__ import annotations

from dataclasses import dataclass

from nebula.spec.tls import Acme, Issuer

OWNED_PREFIX = "nebula-"
# What a route with `auth: nebula` sends to nebulad: the check Caddy asks before each request
# (2xx: go on), and the login page with what it needs, served on the route's own hostname so
# the session cookie is that host's
LOGIN_CHECK = "/api/v1/auth/check"
LOGIN_PATHS = ("/ui/login", "/ui/static/*", "/api/v1/auth/login", "/api/v1/auth/refresh")
SESSION_COOKIE = "nebula_session"  # a browser's access token, kept from the protected upstream


@dataclass(frozen=True)
class ExposedRoute:
    """An installation's service port published at `host`, with the issuer of its certificate."""

    installation: str
    host: str
    container: str  # the container's name, to find its address
    port: int
    issuer: Issuer
    acme: Acme | None  # the ACME CA, when issuer is acme
    # with several nodes: `<node address>:<published host port>`, dialed whatever runs now;
    # None: the container's address on its network, as observed (one node)
    dial: str | None = None
    auth: bool = False  # `auth: nebula`: Caddy lets through only callers with a Nebula login

    @property
    def id(self) -> str:
        return f"{OWNED_PREFIX}{self.installation}-{self.host}"
