"""Who is calling: a `Principal` (name, role, how it proved itself) and the roles' order.

Roles are ordered: viewer < operator < admin; a principal may do what its role or any lower
one may. API-key scopes map onto them: `read` = viewer, `write` = operator, `admin` = admin.

The daemon's API puts the caller's principal in `request.scope["nebula.principal"]` (None for
an anonymous caller of a public route), so the audit log can record who did what.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from nebula.store.identity import ActiveKey, ActiveUser, MakerCheck

AuthMethod = Literal["socket", "password", "api_key", "service_token", "static_token"]
Scope = Literal["read", "write", "admin"]
SCOPE_KEY = "nebula.principal"  # where the daemon's API keeps the caller in the ASGI scope


class Role(IntEnum):
    viewer = 1
    operator = 2
    admin = 3

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value]
        except KeyError:
            raise ValueError(
                f"unknown role {value!r}: use one of {', '.join(r.name for r in cls)}"
            ) from None


SCOPE_ROLES: dict[str, Role] = {"read": Role.viewer, "write": Role.operator, "admin": Role.admin}


def scope_role(scope: str) -> Role:
    """The role an API key's scope grants (an unknown scope grants the least)."""
    return SCOPE_ROLES.get(scope, Role.viewer)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    `name`: a user name, `uid:1000 (ada)` on the socket, `key:NAME` for an API key, `node:NAME`
    for a service token. `credential`: what limits its rate (the user, the key id), never a
    secret.
    """

    name: str
    role: Role
    method: AuthMethod
    credential: str

    def may(self, role: Role) -> bool:
        return self.role >= role

    @property
    def creator(self) -> str:
        """What a key this principal makes records as its `created_by`: a key or service
        token by its id, `key:PREFIX` (names are reused once revoked), anyone else by name."""
        return self.credential if self.method in ("api_key", "service_token") else self.name

    @property
    def maker(self) -> MakerCheck | None:
        """What must still hold of this principal as a key it makes is added (it may have been
        verified seconds ago): its key not revoked, or its user holding this role or higher.
        The socket's owner and the static token cannot be revoked: None."""
        if self.method in ("api_key", "service_token"):
            return ActiveKey(self.credential.removeprefix("key:"))
        if self.method == "password":
            return ActiveUser(self.name, frozenset(r.name for r in Role if r >= self.role))
        return None
