"""What goes wrong inside nebulad's own threads, and keeping those threads alive through it.

A thread of the daemon (the sync worker, the timer, the health monitor, the watchers) never dies
of an exception: it is reported, and the thread carries on or starts its loop again after a
pause. A fault is logged when it first appears (and again when it changes), counted in
`nebula_daemon_faults_total{part}`, flagged by `nebula_daemon_faulty{part}` and listed by
`/status` under `faults` until the part works again (a full disk freed, a database back; for a
loop that crashed, until it starts again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from nebula.daemon import metrics
from nebula.errors import NebulaError

log = logging.getLogger("nebulad")
RESTART_FIRST = 1.0  # seconds before a crashed loop starts again; doubled up to RESTART_MAX
RESTART_MAX = 60.0


class Faults:
    """The current fault of each part of the daemon, by part name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, tuple[str, datetime]] = {}  # message, since

    def report(self, part: str, exc: BaseException, about: str = "") -> str:
        """Record that `part` failed with `exc` (`about` what, when it says more than `part`);
        the message shown for it."""
        expected = isinstance(exc, NebulaError | OSError)
        message = str(exc) if expected else f"internal error: {exc!r}; see nebulad's log"
        message = f"{about}: {message}" if about else message
        metrics.FAULTS.labels(part=part).inc()
        metrics.FAULTY.labels(part=part).set(1)
        with self._lock:
            known_since = self._current.get(part)
            new = known_since is None or known_since[0] != message
            if new:
                self._current[part] = (message, datetime.now(UTC))
        if new:
            log.error("%s: %s", part, message, exc_info=None if expected else exc)
        return message

    def clear(self, part: str) -> None:
        """`part` works again."""
        with self._lock:
            gone = self._current.pop(part, None)
        if gone is not None:
            metrics.FAULTY.labels(part=part).set(0)
            log.info("%s: working again", part)

    def current(self) -> dict[str, str]:
        """Each failing part's fault, and since when."""
        with self._lock:
            return {
                part: f"{message} (since {since.isoformat(timespec='seconds')})"
                for part, (message, since) in self._current.items()
            }

    def keep_running(self, part: str, loop: Callable[[], None], stop: threading.Event) -> None:
        """Run `loop` until it returns (it does once `stop` is set). When it raises, the fault is
        reported (and listed while the loop is down) and the loop starts again after a pause that
        grows while it keeps failing, and starts small again once it ran well for RESTART_MAX."""
        pause = RESTART_FIRST
        while not stop.is_set():
            started = time.monotonic()
            try:
                loop()
                return
            except Exception as exc:
                self.report(part, exc)
            if time.monotonic() - started >= RESTART_MAX:
                pause = RESTART_FIRST
            if stop.wait(pause):
                return
            pause = min(pause * 2, RESTART_MAX)
            self.clear(part)
