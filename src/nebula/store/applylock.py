"""One apply at a time per state store: `nebula apply` and nebulad take turns.

Two applies at once would race for the same containers and networks (one creating what the
other planned to create, each failing on the other's work) and leave statuses that lie. The lock
belongs to the state database, so every process using it agrees on it, whoever runs it:

- PostgreSQL: a session-level advisory lock, on a pooled connection whose `application_name`
  names the holder, released at the end (nodes sharing the database take turns too);
- SQLite: an exclusive `flock` on a file beside the database, which names its holder.

The lock is per node: each node's share (its installations) has a lock of its own, so nodes
apply in parallel, and the cluster-wide kinds (routes, DNS, definitions) have the store's one
lock (`node` None), which the single node of a homelab takes alone, as before there were nodes.
A node's key is derived from its name (`node_key`); two names that collide only take turns.

A holder that dies releases it (its session ends, its file descriptor closes), so a killed apply
never leaves it stuck. A waiter tries again every `RETRY` seconds until it gets the lock or its
`stop` event is set (nebulad stopping), so waiting never blocks a stop. The caller plans only
once it holds the lock, so the plan it carries out is made from the state the last apply left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

Waiting = Callable[[str], None]  # told who holds the lock, before waiting for it

RETRY = 0.25  # seconds between tries while another holds the lock
ADVISORY_KEY = 0x4E42_4150  # "NBAP": below 2**31, so pg_locks shows it as (classid 0, objid KEY)
_NODE_CLASS = 0x4E4E  # "NN": a node's key is (classid NN, objid crc32 of its name)
_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = CAST(:high AS oid)"
    " AND l.objid = CAST(:low AS oid) AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def node_key(node: str | None) -> int:
    """The advisory key of `node`'s apply lock; None: the cluster-wide (the store's) lock."""
    if node is None:
        return ADVISORY_KEY
    return _NODE_CLASS << 32 | zlib.crc32(node.encode())


def lock_file(database: str, node: str | None) -> Path:
    """Where a SQLite database's apply lock of `node` (None: the cluster-wide one) is kept."""
    return Path(f"{database}.apply-lock" + (f".{node}" if node else ""))


class WaitStoppedError(Exception):
    """The wait for the lock was given up: its `stop` event was set."""


def _take(
    try_lock: Callable[[], bool],
    holder: Callable[[], str | None],
    waiting: Waiting,
    stop: threading.Event | None,
) -> None:
    """Take the lock with `try_lock`; if another holds it, tell `waiting` whose it is, then
    try again until it is ours or `stop` is set."""
    if try_lock():
        return
    waiting(f"waiting for {holder() or 'another apply'}, which is applying, to finish")
    stop = stop or threading.Event()
    while not try_lock():
        if stop.wait(RETRY):
            raise WaitStoppedError


@contextmanager
def advisory_lock(
    engine: Engine,
    holder: str,
    waiting: Waiting,
    stop: threading.Event | None,
    key: int = ADVISORY_KEY,
) -> Iterator[None]:
    """Hold the apply lock `key` (`node_key`) of the PostgreSQL database of `engine`, on a
    pooled connection: unlocked at the end, or, should that fail, the connection is closed
    (its session, and so its lock, ends with it) rather than pooled."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")  # no transaction held open
        connection.execute(
            text("SELECT set_config('application_name', :name, false)"), {"name": holder}
        )
        _take(
            lambda: bool(
                connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            ),
            lambda: connection.scalar(_HOLDER, {"high": key >> 32, "low": key & 0xFFFF_FFFF}),
            waiting,
            stop,
        )
        try:
            yield
        finally:
            unlocked = False
            with contextlib.suppress(SQLAlchemyError):
                unlocked = bool(
                    connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                )
            if not unlocked:
                connection.invalidate()


@contextmanager
def file_lock(
    path: Path, holder: str, waiting: Waiting, stop: threading.Event | None
) -> Iterator[None]:
    """Hold the apply lock kept in the file at `path` as `holder`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_lock() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        _take(try_lock, lambda: _named_in(fd), waiting, stop)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # or the next waiter could read this name as its holder's
    finally:
        os.close(fd)  # releases the lock


def _named_in(fd: int) -> str | None:
    """The holder named in the lock file. A holder writes its name just after taking the lock,
    so an empty file is read again for a moment before giving up on the name."""
    for _ in range(10):
        name = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if name:
            return name
        time.sleep(0.05)
    return None
