"""One apply at a time per state store: `nebula apply` and nebulad take turns.

Two applies at once would race for the same containers and networks (one creating what the
other planned to create, each failing on the other's work) and leave statuses that lie. The lock
belongs to the state database, so every process using it agrees on it, whoever runs it:

- PostgreSQL: a session-level advisory lock on a connection of its own, whose
  `application_name` names the holder (nodes sharing the database take turns too);
- SQLite: an exclusive `flock` on a file beside the database, which names its holder.

A holder that dies releases it (its session ends, its file descriptor closes), so a killed apply
never leaves it stuck. The caller plans only once it holds the lock, so the plan it shows,
confirms and guards is the plan it carries out.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

Waiting = Callable[[str], None]  # told who holds the lock, before waiting for it

ADVISORY_KEY = 0x4E42_4150  # "NBAP": below 2**31, so pg_locks shows it as (classid 0, objid KEY)
_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0"
    " AND l.objid = CAST(:key AS oid) AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _waiting_for(holder: str | None) -> str:
    return f"waiting for {holder or 'another apply'}, which is applying, to finish"


@contextmanager
def advisory_lock(engine: Engine, holder: str, waiting: Waiting) -> Iterator[None]:
    """Hold the apply lock of the PostgreSQL database of `engine` as `holder`."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")  # no transaction held open
        connection.detach()  # closed, not pooled, at the end: the session ends with its lock
        connection.execute(
            text("SELECT set_config('application_name', :name, false)"), {"name": holder}
        )
        key = {"key": ADVISORY_KEY}
        if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), key):
            waiting(_waiting_for(connection.scalar(_HOLDER, key)))
            connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        yield


@contextmanager
def file_lock(path: Path, holder: str, waiting: Waiting) -> Iterator[None]:
    """Hold the apply lock kept in the file at `path` as `holder`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(_waiting_for(os.pread(fd, 200, 0).decode(errors="replace").strip()))
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
