"""The vault: secrets encrypted at rest (AES-256-GCM envelopes under a master key).

The public interface, for every part of Nebula that needs a secret:

    from nebula.secrets import open_vault, references_in

    vault = open_vault(store)            # store: nebula.store.Store
    vault.init()                         # once: creates/adopts the master key -> InitResult
    vault.set("cloudflare.token", value) # -> SecretInfo (name, fingerprint, times; no value)
    vault.reveal("cloudflare.token")     # -> str, the plain value (needs the master key)
    vault.reveal_many(["a", "b"])        # -> {name: value}, one query
    vault.fingerprints()                 # -> {name: fingerprint}; no master key needed
    vault.info(name) / vault.secrets()      # -> SecretInfo / [SecretInfo]
    vault.remove(name) / vault.rotate(name, value) / vault.rotate_key()
    references_in("x ${secret:db} y")    # -> ["db"]

Config YAML refers to a secret as `${secret:NAME}`; planning sees only its stand-in
(`••••` + fingerprint, `SecretInfo.masked`). Every failure is a `VaultError` (a `NebulaError`)
whose message never holds a value or a key. Where the master key lives: see `keys`.

The names load on first use, so `secrets.resolve` (tokens from the environment) costs nothing
until the vault itself is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nebula.lazy import lazy_exports

if TYPE_CHECKING:
    from nebula.secrets.errors import (
        MasterKeyError,
        NotInitializedError,
        TamperedSecretError,
        UnknownSecretError,
        VaultError,
    )
    from nebula.secrets.vault import InitResult, RotationResult, SecretInfo, Vault, open_vault
    from nebula.spec.interpolate import secret_references as references_in

__all__ = [
    "InitResult",
    "MasterKeyError",
    "NotInitializedError",
    "RotationResult",
    "SecretInfo",
    "TamperedSecretError",
    "UnknownSecretError",
    "Vault",
    "VaultError",
    "open_vault",
    "references_in",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "MasterKeyError": "nebula.secrets.errors",
        "NotInitializedError": "nebula.secrets.errors",
        "TamperedSecretError": "nebula.secrets.errors",
        "UnknownSecretError": "nebula.secrets.errors",
        "VaultError": "nebula.secrets.errors",
        "InitResult": "nebula.secrets.vault",
        "RotationResult": "nebula.secrets.vault",
        "SecretInfo": "nebula.secrets.vault",
        "Vault": "nebula.secrets.vault",
        "open_vault": "nebula.secrets.vault",
        "references_in": "nebula.spec.interpolate:secret_references",
    },
)
