"""The audit log: every mutation, who made it and when, in a hash chain.

    append(store, actor="user:alice", action="secret.set", target="DB_PASSWORD", detail={...})
    entries(store, since=..., actor="alice", limit=50)    # oldest first, the newest `limit`
    verify(store).problems                                 # () when the chain is whole

Each entry's `hash` is SHA-256 over a canonical JSON (sorted keys, no spaces, UTF-8) of its
time, actor, action, target, detail and the previous entry's hash (`GENESIS` for the first).
The chain, not `seq`, fixes the order; `seq` numbers the entries 1, 2, 3, ... So `verify`
tells apart an edited entry (its hash no longer matches), deleted ones (a gap, or a link to a
hash no entry has), a reordered one (it links to an entry that is not its predecessor) and a
renumbered one.

The tail is anchored by `audit_head`, one row holding the newest entry's number and hash,
moved in the same transaction as each append: deleting the last entries leaves the head
pointing past the end, which `verify` reports. Someone who can rewrite the whole database can
rewrite the head too; `verify` prints the head, so a copy of it kept elsewhere (`nebula audit
verify --expect SEQ:HASH`) catches even that.

Appends are serialised on the head row: each begins by updating it (a row lock on PostgreSQL,
the write lock on SQLite), so two processes appending at once never fork the chain; the
primary key on `seq` and the unique `prev_hash` would refuse a fork anyway, and an append that
loses such a race is retried.

Every detail goes through `mask.mask_detail` before it is hashed and stored.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, Text, cast, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from nebula.errors import StoreError
from nebula.store.audit_chain import GENESIS, HEAD_ID, capped, entry_hash, stored_detail
from nebula.store.models import AuditEntry, AuditHead, utcnow
from nebula.store.store import Store

HEAD_RESTORED = "audit.head-restored"  # written when an append found the head row gone
_HEAD_ID = HEAD_ID
_ATTEMPTS = 20

ProblemKind = Literal["edited", "deleted", "reordered", "renumbered", "truncated", "head"]


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None  # None: what is stored is not a JSON object (tampered with)
    prev_hash: str
    hash: str


# An entry's columns, its detail as the stored text: a detail that is not JSON (written around
# Nebula) is then an entry `verify` reports, not an error loading it.
_COLUMNS = select(
    AuditEntry.seq,
    AuditEntry.at,
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.target,
    cast(AuditEntry.detail, Text),
    AuditEntry.prev_hash,
    AuditEntry.hash,
)


@dataclass(frozen=True)
class Problem:
    """One break in the chain: `seq` is the entry where it shows."""

    seq: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class Verification:
    checked: int  # entries read
    head_seq: int  # what the head row says: the newest entry's number and hash
    head_hash: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def append(
    store: Store,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> AuditRecord:
    """Add an entry at the end of the chain; `detail` is masked first (`secrets`: known secret
    values, each mapped to its fingerprint, masked wherever they appear)."""
    masked = stored_detail(detail, secrets)
    attempt = 0
    while True:
        try:
            with store.transaction() as session:
                return _append(session, *capped(actor, action, target), masked)
        except StoreError as exc:  # lost a race for the head: try again
            attempt += 1
            if attempt == _ATTEMPTS or not isinstance(
                exc.__cause__, IntegrityError | OperationalError
            ):
                raise
            time.sleep(random.uniform(0.005, 0.05) * attempt)


def _append(
    session: Session, actor: str, action: str, target: str | None, detail: dict[str, Any]
) -> AuditRecord:
    # The first statement takes the lock: a row lock on PostgreSQL, the write lock on SQLite.
    head = session.execute(
        update(AuditHead)
        .where(AuditHead.id == _HEAD_ID)
        .values(seq=AuditHead.seq)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one_or_none()
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).one_or_none()
    if head is None:  # the head row is gone: start again from the newest entry, and say so
        seq, prev = (last.seq, last.hash) if last is not None else (0, GENESIS)
        session.execute(insert(AuditHead).values(id=_HEAD_ID, seq=seq, hash=prev))
        if last is not None:
            restored = _write(
                session,
                seq + 1,
                prev,
                actor="nebula:audit",
                action=HEAD_RESTORED,
                target=None,
                detail={},
            )
            seq, prev = restored.seq, restored.hash
    elif last is not None and last.seq > head.seq:  # written past the head: never fork
        seq, prev = last.seq, last.hash
    else:
        seq, prev = head.seq, head.hash
    return _write(session, seq + 1, prev, actor=actor, action=action, target=target, detail=detail)


def _write(
    session: Session,
    seq: int,
    prev: str,
    *,
    actor: str,
    action: str,
    target: str | None,
    detail: dict[str, Any],
) -> AuditRecord:
    at = utcnow()
    digest = entry_hash(
        at=at, actor=actor, action=action, target=target, detail=detail, prev_hash=prev
    )
    record = AuditRecord(seq, at, actor, action, target, detail, prev, digest)
    session.add(
        AuditEntry(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            target=target,
            detail=detail,
            prev_hash=prev,
            hash=digest,
        )
    )
    session.flush()
    session.execute(update(AuditHead).where(AuditHead.id == _HEAD_ID).values(seq=seq, hash=digest))
    return record


def entries(
    store: Store,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    target: str | None = None,
    limit: int | None = 100,
) -> list[AuditRecord]:
    """The newest `limit` entries (all with None) matching, oldest first.

    `actor` matches the whole actor (`user:alice`) or its name (`alice` for `user:alice` and
    `cli:alice@host`); `target` the whole target (an installation, a secret's name, ...).
    """
    query = _COLUMNS.order_by(AuditEntry.seq.desc())
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if actor is not None:
        name = actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(
            or_(
                AuditEntry.actor == actor,
                AuditEntry.actor.like(f"%:{name}", escape="\\"),
                AuditEntry.actor.like(f"%:{name}@%", escape="\\"),
            )
        )
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if limit is not None:
        query = query.limit(limit)
    with store.transaction() as session:
        rows = [_record(row) for row in session.execute(query)]
    return rows[::-1]


def verify(store: Store, expect: tuple[int, str] | None = None) -> Verification:
    """Walk the whole chain and report every entry that was edited, deleted or moved.

    `expect` is a (seq, hash) noted earlier (a past head): it must still be in the chain.
    """
    problems: list[Problem] = []
    previous: AuditRecord | None = None
    checked = 0
    with store.transaction() as session:
        head = session.get(AuditHead, _HEAD_ID)
        head_seq, head_hash = (head.seq, head.hash) if head is not None else (0, GENESIS)
        # Where each hash sits, first: an entry may be moved before its predecessor.
        by_hash: dict[str, int] = {}
        for digest, seq in session.execute(select(AuditEntry.hash, AuditEntry.seq)):
            by_hash.setdefault(digest, seq)
        rows = session.execute(_COLUMNS.order_by(AuditEntry.seq).execution_options(yield_per=1000))
        for entry in map(_record, rows):
            checked += 1
            problems.extend(_check(entry, previous, by_hash))
            previous = entry
    problems.extend(_check_head(head is not None, head_seq, head_hash, previous, by_hash))
    if expect is not None and by_hash.get(expect[1]) != expect[0]:
        problems.append(
            Problem(
                expect[0],
                "truncated",
                f"entry #{expect[0]} with hash {expect[1][:16]}… is not in the log: "
                "the log was cut back or rewritten since",
            )
        )
    return Verification(checked, head_seq, head_hash, tuple(problems))


def _check(
    entry: AuditRecord, previous: AuditRecord | None, by_hash: dict[str, int]
) -> list[Problem]:
    seq = entry.seq
    if entry.detail is None:
        return [Problem(seq, "edited", f"entry #{seq} was edited: its detail is not a JSON object")]
    recomputed = entry_hash(
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        detail=entry.detail,
        prev_hash=entry.prev_hash,
    )
    if recomputed != entry.hash:
        return [Problem(seq, "edited", f"entry #{seq} was edited: it no longer matches its hash")]
    if entry.action == HEAD_RESTORED:
        return [
            Problem(
                seq,
                "head",
                f"the head row was gone before #{seq} (restored then): entries before it may "
                "have been deleted from the end",
            )
        ]
    prev_seq, expected = (previous.seq, previous.hash) if previous else (0, GENESIS)
    if entry.prev_hash == expected:
        if seq != prev_seq + 1:
            return [
                Problem(seq, "renumbered", f"entry #{seq} was renumbered: it follows #{prev_seq}")
            ]
        return []
    if entry.prev_hash in by_hash:
        follows = by_hash[entry.prev_hash]
        return [
            Problem(
                seq, "reordered", f"entry #{seq} was moved: it was written right after #{follows}"
            )
        ]
    if seq > prev_seq + 1:
        gone = _missing(prev_seq + 1, seq - 1)
        return [Problem(seq, "deleted", f"{gone} deleted (before #{seq})")]
    where = f"between #{prev_seq} and #{seq}" if previous else f"before #{seq}"
    return [
        Problem(
            seq,
            "deleted",
            f"the chain breaks {where}: entries were deleted and the rest renumbered, "
            f"or #{prev_seq} was rewritten",
        )
    ]


def _check_head(
    present: bool,
    head_seq: int,
    head_hash: str,
    last: AuditRecord | None,
    by_hash: dict[str, int],
) -> list[Problem]:
    last_seq, last_hash = (last.seq, last.hash) if last else (0, GENESIS)
    if not present:
        return [Problem(last_seq, "head", "the head row (the anchor of the newest entry) is gone")]
    if head_hash == last_hash:
        return []
    if head_hash in by_hash:
        at = by_hash[head_hash]
        return [
            Problem(
                last_seq,
                "head",
                f"the head points at #{at}, but the log goes on to #{last_seq}: "
                "entries were added without the audit log, or the head was rolled back",
            )
        ]
    if head_seq <= last_seq:
        return [
            Problem(
                last_seq, "head", f"entry #{last_seq} does not match the head: it was rewritten"
            )
        ]
    gone = _missing(last_seq + 1, head_seq)
    return [Problem(head_seq, "truncated", f"{gone} deleted from the end (after #{last_seq})")]


def _missing(first: int, last: int) -> str:
    return f"entry #{first} was" if first == last else f"entries #{first}..#{last} were"


def _record(row: Row[int, datetime, str, str, str | None, str, str, str]) -> AuditRecord:
    seq, at, actor, action, target, detail, prev_hash, digest = row
    return AuditRecord(seq, at, actor, action, target, _detail(detail), prev_hash, digest)


def _detail(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_anchor(text: str) -> tuple[int, str]:
    """`SEQ:HASH` as `verify` prints it; `ValueError` otherwise."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{text!r} is not SEQ:HASH (a number, a colon, 64 hex digits)")
    return int(seq), digest
