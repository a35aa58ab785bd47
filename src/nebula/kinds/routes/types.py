"""The routes kind's plain data: an exposed hostname and what it routes to."""

from __future__ import annotations

from dataclasses import dataclass

from nebula.spec.tls import Acme, Issuer

OWNED_PREFIX = "nebula-"


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

    @property
    def id(self) -> str:
        return f"{OWNED_PREFIX}{self.installation}-{self.host}"
