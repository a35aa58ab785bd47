"""What can go wrong in the vault. No message ever holds a secret's value or a key."""

from __future__ import annotations

from nebula.errors import NebulaError


class VaultError(NebulaError):
    """The vault refused or failed an operation; the message says what to do."""


class NotInitializedError(VaultError):
    """The vault has no master key yet."""


class MasterKeyError(VaultError):
    """No master key could be found, or the one found is not this vault's."""


class UnknownSecretError(VaultError):
    """No secret of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no secret {name!r} in the vault; create it with `nebula secrets set {name}`"
        )


class TamperedSecretError(VaultError):
    """A stored secret does not authenticate: its row was altered or swapped."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"secret {name!r} failed its integrity check: its stored value or key was altered, "
            f"or swapped with another secret's; set it again with `nebula secrets set {name}`"
        )
