"""Masking every secret of the vault out of texts a person or a model reads: container logs,
what agents' tools return.

The vault's values (and their common encodings, see `store.mask.secret_forms`) are decrypted
once and kept until the vault changes: its fingerprints (one query, nothing decrypted) tell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from nebula.stand_ins import MASK
from nebula.store.mask import mask_detail, secret_replacer

if TYPE_CHECKING:
    from nebula.store import Store


class VaultMasker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._kept: tuple[Mapping[str, str], Callable[[str], str]] | None = None

    def fingerprints(self) -> dict[str, str]:
        """The vault's secrets, name -> fingerprint: a secret set, changed or removed changes
        them."""
        from nebula.secrets import open_vault

        return open_vault(self.store).fingerprints()

    def masker(self, fingerprints: Mapping[str, str] | None = None) -> Callable[[str], str]:
        """A function masking every vault secret (and a URL's password, a `TOKEN=...`) out of a
        text; `fingerprints` (read now when not given) say whether the kept one is current."""
        from nebula.secrets import open_vault

        current = self.fingerprints() if fingerprints is None else fingerprints
        kept = self._kept
        if kept is None or kept[0] != current:
            values = open_vault(self.store).reveal_many(current) if current else {}
            replace = secret_replacer(dict.fromkeys(values.values(), MASK))
            kept = self._kept = (dict(current), lambda text: str(mask_detail(replace(text))))
        return kept[1]
