"""The audit chain's rules that need no database: the canonical hash of an entry, the first
entry's `prev_hash`, and what an entry's fields become before they are hashed and stored
(`store.audit` writes and verifies the chain with them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nebula.store.mask import mask_detail

GENESIS = "0" * 64
HEAD_ID = 1  # the one row of `audit_head`


def entry_hash(
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str | None,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> str:
    document = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_detail(
    detail: Mapping[str, Any] | None, secrets: Mapping[str, str] | None
) -> dict[str, Any]:
    """`detail` masked (`secrets`: value -> fingerprint), through JSON and back: what is hashed
    is exactly what the database will hand back."""
    masked: dict[str, Any] = json.loads(
        json.dumps(mask_detail(dict(detail or {}), secrets), default=str, ensure_ascii=False)
    )
    return masked


def capped(actor: str, action: str, target: str | None) -> tuple[str, str, str | None]:
    """The fields cut to their columns' lengths."""
    return actor[:255], action[:64], target and target[:500]
