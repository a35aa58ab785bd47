"""The daemon's health monitor: every installation's health checks, each on its own interval.

One timer thread keeps a heap of when each check is next due and hands due checks to a few
worker threads (a slow check never delays the others; one check never runs twice at once).
Each result is stored (the latest per installation and check), exported as metrics, and a
change of status (healthy ↔ unhealthy, or a first result) is published as a `health` event,
which the remediation engine can act on. Installations being applied are skipped until their
apply ends: apply itself waits for their health. A check that cannot run or be recorded (the
store full) makes the `health` part faulty (see `daemon.faults`); the fault names every such
check and clears once none is left.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nebula.daemon import metrics
from nebula.daemon.events import EventBus
from nebula.daemon.faults import Faults
from nebula.errors import NebulaError
from nebula.kinds.packages.health import ProbeResult, probe
from nebula.kinds.packages.types import DesiredInstallation, ExecCheck, HealthProbe, HttpCheck
from nebula.providers.docker import DockerProvider
from nebula.store import Store, installation_runs

log = logging.getLogger("nebulad")
RECHECK_FAILED = 5.0  # seconds until a failed check runs again

Key = tuple[str, str]  # installation, check


@dataclass(frozen=True)
class _Scheduled:
    installation: str
    check: HealthProbe

    @property
    def key(self) -> Key:
        return (self.installation, self.check.name)


class HealthMonitor:
    def __init__(
        self,
        store: Store,
        provider: DockerProvider,
        bus: EventBus,
        faults: Faults | None = None,
        workers: int = 4,
    ) -> None:
        self.store = store
        self.provider = provider
        self.bus = bus
        self.faults = faults or Faults()
        self._stop = threading.Event()
        self._checks: dict[Key, _Scheduled] = {}
        self._due: list[tuple[float, Key]] = []
        self._running: set[Key] = set()
        self._failing: set[Key] = set()  # checks that cannot run or be recorded
        self._cond = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="health")
        self._thread = threading.Thread(
            target=self.faults.keep_running,
            args=("health", self._run, self._stop),
            name="health",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def watch(self, installations: Sequence[DesiredInstallation]) -> None:
        """Check these installations from now on: new or changed checks are due at once,
        those gone are dropped with their stored results and metrics. Cheap when unchanged."""
        wanted = {
            (inst.name, check.name): _Scheduled(inst.name, check)
            for inst in installations
            for check in inst.health_checks
        }
        with self._cond:
            if wanted == self._checks:
                return
            now = time.monotonic()
            for key, scheduled in wanted.items():
                if self._checks.get(key) != scheduled:
                    heapq.heappush(self._due, (now, key))
            gone = set(self._checks) - set(wanted)
            self._checks = wanted
            if self._failing & gone and not self._failing - gone:
                self.faults.clear("health")  # under the lock: never after a newer report
            self._failing -= gone
            self._cond.notify_all()
        for installation, check in gone:
            _forget_metrics(installation, check)
        try:
            installation_runs.forget_health(self.store, wanted)
        except NebulaError as exc:
            log.warning("cannot drop old health results: %s", exc)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                due = []
                while self._due and self._due[0][0] <= time.monotonic():
                    _, key = heapq.heappop(self._due)
                    scheduled = self._checks.get(key)
                    if scheduled is not None and key not in self._running:
                        self._running.add(key)
                        due.append(scheduled)
            try:
                busy = self._busy_installations() if due else set()
                while due:
                    if due[0].installation in busy:
                        self._done(due[0], delay=1.0)  # being applied: look again shortly
                    else:
                        self._pool.submit(self._check, due[0])
                    due.pop(0)
            finally:  # when this loop breaks, the checks it took are due again, not lost
                for scheduled in due:
                    self._done(scheduled, delay=RECHECK_FAILED)

    def _busy_installations(self) -> set[str]:
        """Installations not (yet) deployed, or being applied now."""
        try:
            rows = self.store.installations()
        except NebulaError:
            return set()
        deployed = {i.name for i in rows if i.status != "installing"}
        return {key[0] for key in self._checks} - deployed

    def _check(self, scheduled: _Scheduled) -> None:
        delay = scheduled.check.interval
        try:
            result = probe(scheduled.check, self.provider)
            self._record(scheduled, result)
            if not result.ok:  # a failure is confirmed (or cleared) soon, not an interval later
                delay = min(delay, RECHECK_FAILED)
            self._fault(scheduled.key, None)
        except Exception as exc:  # one check never stops the monitor
            self._fault(scheduled.key, exc)
            delay = min(delay, RECHECK_FAILED)
        finally:
            self._done(scheduled, delay=delay)

    def _fault(self, key: Key, exc: Exception | None) -> None:
        """Check `key` could not run or be recorded (`exc`), or could (None). The fault is
        reported or cleared under the lock, so it always follows the newest failing set."""
        with self._cond:
            if exc is not None:
                self._failing.add(key)
                names = ", ".join(f"{inst}/{check}" for inst, check in sorted(self._failing))
                self.faults.report("health", exc, about=f"checks {names}")
            elif key in self._failing:
                self._failing.discard(key)
                if not self._failing:
                    self.faults.clear("health")

    def _done(self, scheduled: _Scheduled, delay: float) -> None:
        with self._cond:
            self._running.discard(scheduled.key)
            if self._checks.get(scheduled.key) == scheduled:
                heapq.heappush(self._due, (time.monotonic() + delay, scheduled.key))
                self._cond.notify_all()

    def _record(self, scheduled: _Scheduled, result: ProbeResult) -> None:
        installation, check = scheduled.key
        record, previous = installation_runs.record_health(
            self.store,
            installation,
            check,
            kind=_kind(scheduled.check),
            target=scheduled.check.target,
            ok=result.ok,
            detail=result.detail,
            latency_ms=result.latency * 1000,
        )
        metrics.HEALTH_UP.labels(installation=installation, check=check).set(1 if result.ok else 0)
        metrics.HEALTH_LATENCY.labels(installation=installation, check=check).set(result.latency)
        metrics.HEALTH_PROBES.labels(result="pass" if result.ok else "fail").inc()
        if previous != record.status:
            log.info("health %s/%s: %s (%s)", installation, check, record.status, record.detail)
            self.bus.publish(
                "health",
                installation=installation,
                check=check,
                status=record.status,
                previous=previous,
                detail=record.detail,
                consecutive_failures=record.consecutive_failures,
            )


def _kind(check: HealthProbe) -> str:
    if isinstance(check, HttpCheck):
        return "http"
    return "exec" if isinstance(check, ExecCheck) else "tcp"


def _forget_metrics(installation: str, check: str) -> None:
    for gauge in (metrics.HEALTH_UP, metrics.HEALTH_LATENCY):
        with contextlib.suppress(KeyError):
            gauge.remove(installation, check)
