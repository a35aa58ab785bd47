"""Where a provider's token comes from: `${secret:NAME}` is `NEBULA_SECRET_NAME` in the
environment when set (an explicit override), else the vault. Tokens are resolved at the moment
a provider is opened, and never stored or printed."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from nebula.errors import NebulaError

if TYPE_CHECKING:
    from nebula.store import Store

SecretResolver = Callable[[str], str]
"""A secret's name → its value; raises `NebulaError` when there is none."""


class SecretUnavailableError(NebulaError):
    """A provider token's secret cannot be found."""


def environment_secrets(name: str) -> str:
    """Secrets from the environment: `${secret:PDNS_KEY}` is `NEBULA_SECRET_PDNS_KEY`."""
    variable = "NEBULA_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    value = os.environ.get(variable)
    if not value:
        raise SecretUnavailableError(
            f"secret {name!r} is not available: store it in the vault (`nebula secrets set "
            f"{name}`) or set {variable}"
        )
    return value


def vault_secrets(store: Store | Callable[[], Store]) -> SecretResolver:
    """Secrets from the environment (`NEBULA_SECRET_NAME`, an explicit override), else the
    vault in `store` (or in the store the callable opens, only when the vault is needed)."""

    def resolve(name: str) -> str:
        try:
            return environment_secrets(name)
        except SecretUnavailableError as missing:
            from_environment = missing
        from nebula.secrets.vault import open_vault

        try:
            return open_vault(store if not callable(store) else store()).reveal(name)
        except NebulaError as exc:
            raise SecretUnavailableError(f"{from_environment} ({exc})") from None

    return resolve
