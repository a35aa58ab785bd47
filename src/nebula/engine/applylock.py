"""One apply at a time per state store: `nebula apply` and nebulad take turns.

Two applies at once would race for the same containers and networks (one creating what the
other planned to create, each failing on the other's work) and leave statuses that lie. An
exclusive `flock` on `apply.lock` in the store's data dir is held for the whole apply; the file
names its holder, so the one that waits can say for whom. The kernel releases the lock when its
holder dies, so a killed apply never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "apply.lock"


@contextmanager
def apply_lock(data_dir: Path, holder: str, waiting: Callable[[str], None]) -> Iterator[bool]:
    """Hold the apply lock of `data_dir` as `holder`; yields whether another apply had to be
    waited for (then the world changed meanwhile). `waiting` is told who holds it first."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another apply"
            waiting(f"waiting for {holder}, which is applying, to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})".encode(), 0)
        yield waited
    finally:
        os.close(fd)  # releases the lock
