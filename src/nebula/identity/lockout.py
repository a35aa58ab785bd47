"""Failed-login back-off and lockout, per user and per client address.

Per user, persisted in the store (`users.failed_logins`, `locked_until`), so restarting the
daemon does not reset a brute force: the first `FREE_FAILURES` wrong passwords in a row cost
nothing; each one after that locks the user for twice as long as the last (1 minute, 2, 4, ...,
at most an hour). While locked, no password is checked at all; a correct login resets it.

Per client address, in memory: `ADDRESS_FAILURES` wrong logins within `ADDRESS_WINDOW`
(whatever the user names) block that address until the oldest of them leaves the window. This
stops one address from guessing across many accounts; a restart forgets it, but the per-user
lockouts and the TCP rate limit remain.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

FREE_FAILURES = 5
FIRST_LOCK_SECONDS = 60.0
MAX_LOCK_SECONDS = 3600.0
ADDRESS_FAILURES = 20
ADDRESS_WINDOW = 900.0


def user_lock_seconds(failures: int) -> float | None:
    """How long a user is locked after `failures` wrong passwords in a row (None: not)."""
    if failures < FREE_FAILURES:
        return None
    return float(min(FIRST_LOCK_SECONDS * 2 ** (failures - FREE_FAILURES), MAX_LOCK_SECONDS))


class AddressGuard:
    def __init__(
        self,
        limit: int = ADDRESS_FAILURES,
        window: float = ADDRESS_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked_for(self, address: str) -> float:
        """Seconds until `address` may try again; 0.0 when it may now."""
        now = self.clock()
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return 0.0
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[address]
                return 0.0
            if len(times) < self.limit:
                return 0.0
            return times[0] + self.window - now

    def failed(self, address: str) -> None:
        with self._lock:
            times = self._failures.setdefault(address, deque(maxlen=self.limit))
            times.append(self.clock())
