"""Remediation as nebulad runs it and its API offers it: alerts in, incidents, silences,
runbooks and their executions out.

`Remediation` owns the incidents, silences and the engine; nebulad feeds it its events
(`observe`, `on_container_event`) and the desired state of each good commit (`configure`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nebula.errors import NebulaError, RequestError
from nebula.kinds.packages.types import HttpCheck
from nebula.kinds.runbooks.spec import Runbook
from nebula.remediation import metrics, sources
from nebula.remediation.alerts import Alert, from_alertmanager
from nebula.remediation.engine import Remediator, Safety, trigger_of
from nebula.remediation.executor import Finished, StepState
from nebula.remediation.incidents import Incidents, Received
from nebula.remediation.silences import Silences, parse_matcher
from nebula.remediation.workflows import Workflows
from nebula.spec.config import Node
from nebula.spec.interpolate import interpolate
from nebula.spec.remediation import MaintenanceWindow
from nebula.store.records import ExecutionInfo, IncidentInfo, RunbookRecord, SilenceInfo

if TYPE_CHECKING:
    from nebula.kinds.base import Desired
    from nebula.providers.docker import ContainerEvent, DockerProvider
    from nebula.providers.notify import Delivery, Notifier
    from nebula.store import Store

log = logging.getLogger("nebulad.remediation")
_TOLD = frozenset({"opened", "reopened", "resolved"})


class RemediationError(RequestError):
    """A request remediation cannot answer."""


class Remediation:
    def __init__(
        self,
        store: Store,
        docker: DockerProvider,
        publish: Callable[..., None],
        *,
        node: str = "",
        recreate: Callable[[str], None] = lambda container: None,
        busy: Callable[[str], bool] = lambda container: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.node = node
        self.clock = clock
        self.incidents = Incidents(store, clock=clock)
        self.silences = Silences(store, clock)
        self._notifier: Notifier | None = None
        self._channels: dict[str, list[str]] = {}
        self._maintenance: list[MaintenanceWindow] = []
        self._told: tuple[str, ...] = ()  # channels told of incidents opening and resolving
        self._containers: dict[str, list[str]] = {}  # installation -> its containers
        self._intake: queue.Queue[Alert | None] = queue.Queue()
        threading.Thread(target=self._take_in, name="alerts", daemon=True).start()
        metrics.INCIDENTS_OPEN.set_function(self._open_incidents)
        self.engine = Remediator(
            store,
            self.incidents,
            docker,
            self.notify,
            publish=publish,
            recreate=recreate,
            busy=busy,
            clock=clock,
        )
        self.workflows = Workflows(store, self.engine.services, publish, self.engine.stop)
        self._nodes: dict[str, Node] = {}
        self.engine.services.ssh = self._ssh

    # -- configuration ---------------------------------------------------------------------

    def configure(self, desired: Desired, secret: Callable[[str], str]) -> None:
        """The runbooks, channels, limits and windows of a good commit."""
        config = desired.repo.config
        self.engine.services.secret = secret
        self.workflows.update(desired.workflows)
        self.engine.update(
            [r.spec for r in desired.runbooks],
            {i.name: url for i in desired.installations if (url := _endpoint(i.health_checks))},
        )
        limits = config.remediation
        self.engine.safety = Safety(
            limits.max_restarts, limits.restart_window, limits.cooldown, limits.concurrency
        )
        self.incidents.reopen_window = timedelta(seconds=limits.reopen_window)
        self._maintenance = list(config.maintenance)
        self._told = tuple(limits.notify)
        self._containers = {i.name: [c.name for c in i.containers] for i in desired.installations}
        self._nodes = {n.name: n for n in config.nodes}
        channels = {
            name: [interpolate(url, {}, _Secrets(secret)) for url in channel.urls]
            for name, channel in config.notifications.items()
        }
        if channels != self._channels:
            from nebula.providers.notify import Notifier

            self._channels = channels
            self._notifier = Notifier(channels)

    def close(self) -> None:
        self._intake.put(None)
        self.workflows.close()
        self.engine.close()

    # -- alerts in -------------------------------------------------------------------------

    def receive(self, alert: Alert) -> Received:
        window = self._in_maintenance(alert.labels)
        if window is not None and alert.status == "firing":
            received = self.incidents.receive(alert)
            if received.incident is not None:
                why = window.comment or f"maintenance window {dict(window.match)}"
                self.incidents.note(received.incident.id, "silenced", f"in {why}: nothing runs")
            return received
        received = self.engine.receive(alert)
        if received.incident is not None and received.outcome in _TOLD and self._told:
            threading.Thread(
                target=self._tell, args=(received.incident, received.outcome), daemon=True
            ).start()
        return received

    def _tell(self, incident: IncidentInfo, outcome: str) -> None:
        """Tell `remediation.notify`'s channels that an incident opened, re-opened or resolved;
        each delivery goes on its timeline."""
        title = f"Nebula: incident {outcome}: {incident.title}"
        body = (
            f"{incident.title}\nseverity: {incident.severity}\nservice: {incident.service_name}"
            f"\nincident: {incident.id}"
        )
        for delivery in self.notify(list(self._told), title, body):
            sent = "sent" if delivery.ok else f"not sent: {delivery.error}"
            self.incidents.note(incident.id, "notification", f"{delivery.channel}: {sent}")

    def observe(self, kind: str, data: Mapping[str, Any]) -> None:
        """One of nebulad's events; those that are alerts are received."""
        alert: Alert | None = None
        if kind == "health":
            containers = self._containers.get(str(data.get("installation")), [])
            alert = sources.from_health(data, containers, self.node)
        elif kind == "sync_finished":
            alert = sources.from_sync(data, self.node)
        elif kind == "certificate_expiring":
            alert = sources.from_certificate(data)
        if alert is not None:
            self.receive(alert)
        self.engine.on_event(kind, data)
        self.workflows.on_event(kind, data)

    def on_container_event(self, event: ContainerEvent) -> None:
        """Queued: the thread reading Docker's events never waits on the store."""
        alert = sources.from_container_event(event, self.node)
        if alert is not None:
            self._intake.put(alert)

    def _take_in(self) -> None:
        while (alert := self._intake.get()) is not None:
            try:
                self.receive(alert)
            except Exception:  # one alert never stops the next
                log.exception("alert %s on %s not handled", alert.name, dict(alert.labels))

    def fire(self, request: Mapping[str, Any], actor: str) -> Received:
        """`nebula alert fire`: an alert by hand, to try runbooks."""
        name = request.get("name")
        if not isinstance(name, str) or not name:
            raise RemediationError("invalid", 'give the alert\'s name: {"name": "unhealthy"}')
        labels = _strings(request.get("labels"), "labels")
        annotations = _strings(request.get("annotations"), "annotations")
        status = request.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise RemediationError("invalid", "status is firing or resolved")
        alert = Alert(
            name=name,
            labels=labels,
            annotations={"fired_by": actor, **annotations},
            status=status,
            source="manual",
        )
        return self.receive(alert)

    def alertmanager(self, payload: Any) -> list[Received]:
        try:
            alerts = from_alertmanager(payload)
        except ValueError as exc:
            raise RemediationError("invalid", f"not an Alertmanager notification: {exc}") from None
        return [self.receive(alert) for alert in alerts]

    # -- incidents and silences ------------------------------------------------------------

    def incident(self, incident_id: str) -> IncidentInfo:
        found = self.incidents.get(incident_id)
        if found is None:
            raise RemediationError("not_found", f"no incident {incident_id}")
        return found

    def add_silence(
        self, matchers: Sequence[str], duration: float, comment: str, actor: str
    ) -> SilenceInfo:
        try:
            parsed = [parse_matcher(m) for m in matchers]
            return self.silences.add(parsed, duration, comment, actor)
        except ValueError as exc:
            raise RemediationError("invalid", str(exc)) from None

    # -- runbooks --------------------------------------------------------------------------

    def runbooks(self) -> list[RunbookRecord]:
        return self.store.runbooks()

    def run(
        self, name: str, labels: Mapping[str, str], actor: str, dry_run: bool = False
    ) -> dict[str, Any]:
        """`nebula runbooks run NAME`: the runbook at once, about the service `labels` name;
        with `dry_run`, the steps it would take and whether each condition holds."""
        record = next((r for r in self.store.runbooks() if r.name == name), None)
        if record is None:
            known = ", ".join(r.name for r in self.store.runbooks()) or "none"
            raise RemediationError("not_found", f"no runbook {name!r} (runbooks: {known})")
        runbook = Runbook.model_validate(record.definition)
        alert = Alert(name="manual", labels=dict(labels), source="manual")
        context = self.engine.context(alert, None)
        if dry_run:
            return {"runbook": name, "dry_run": True, "steps": _dry_run(runbook, context)}
        trigger = {**trigger_of(alert), "manual": actor}  # labels kept: a resumed run has them
        finished = self.engine.run(runbook, context, None, trigger=trigger)
        return {
            "runbook": name,
            "execution": finished.execution,
            "status": finished.status,
            "error": finished.error,
        }

    def executions(
        self, runbook: str | None = None, incident_id: str | None = None, limit: int = 50
    ) -> list[ExecutionInfo]:
        return self.store.executions(runbook=runbook, incident_id=incident_id, limit=limit)

    def execution(self, execution_id: str) -> ExecutionInfo:
        found = self.store.execution(execution_id)
        if found is None:
            raise RemediationError("not_found", f"no runbook execution {execution_id}")
        return found

    def decide(self, execution_id: str, approved: bool, actor: str) -> ExecutionInfo:
        """A person's answer to the step an execution waits on; approved, it goes on."""
        execution = self.execution(execution_id)
        try:
            decided = self.store.decide_approval(execution_id, approved, actor)
        except NebulaError as exc:
            raise RemediationError("conflict", str(exc)) from None
        verdict = "approved" if approved else "rejected"
        if execution.incident_id:
            self.incidents.note(
                execution.incident_id, "runbook", f"{execution.runbook_name}: {actor} {verdict}"
            )
        if approved:
            self.engine.resume(decided)  # approved: the waiting step runs now
        else:
            return self.store.finish_execution(
                execution_id, "rejected", error=f"rejected by {actor}"
            )
        return decided

    def resume_interrupted(self) -> list[str]:
        """At start: runs cut short by the last stop are marked interrupted, and those of a
        still open incident go on from their first unfinished step."""
        resumed = []
        for execution_id in self.store.interrupt_executions(
            "interrupted: nebulad stopped during this run"
        ):
            execution = self.store.execution(execution_id)
            if execution is not None and execution.kind == "workflow":
                self.workflows.resume(execution)
                resumed.append(execution_id)
                continue
            if execution is None or not execution.incident_id:
                continue
            incident = self.incidents.get(execution.incident_id)
            if incident is None or incident.status == "resolved":
                continue
            self.incidents.note(
                incident.id, "runbook", f"{execution.runbook_name} was interrupted; resuming"
            )
            self.engine.resume(execution)
            resumed.append(execution_id)
        return resumed

    # -- notifications ---------------------------------------------------------------------

    def notify(self, channels: list[str], title: str, body: str) -> list[Delivery]:
        notifier = self._notifier
        if notifier is None:
            from nebula.providers.notify import Delivery

            why = "no notification channels are declared"
            deliveries = [Delivery(c, False, 0, why) for c in channels]
        else:
            deliveries = notifier.send_many(channels, title, body)
        for delivery in deliveries:
            result = "sent" if delivery.ok else "failed"
            metrics.NOTIFICATIONS.labels(channel=delivery.channel, result=result).inc()
            if not delivery.ok:
                log.warning("notification to %s not sent: %s", delivery.channel, delivery.error)
        return deliveries

    def _open_incidents(self) -> float:
        return float(
            sum(len(self.incidents.list(s, limit=100_000)) for s in ("open", "acknowledged"))
        )

    # -- ssh -------------------------------------------------------------------------------

    def _ssh(self, node: str, command: str, timeout: float) -> tuple[int, str]:
        """The ssh action: `command` on a node of the last good commit's `nodes:`."""
        from nebula.providers.ssh import run_command

        found = self._nodes.get(node)
        if found is None:
            known = ", ".join(self._nodes) or "none yet"
            raise NebulaError(f"no node {node!r} in nebula.yaml's nodes (nodes: {known})")
        return run_command(found, command, timeout)

    # -- maintenance -----------------------------------------------------------------------

    def _in_maintenance(self, labels: Mapping[str, str]) -> MaintenanceWindow | None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        for window in self._maintenance:
            if all(labels.get(k) == v for k, v in window.match.items()) and _open(window, now):
                return window
        return None


def _open(window: MaintenanceWindow, now: datetime) -> bool:
    if window.start is not None and window.end is not None:
        return window.start <= now < window.end
    from apscheduler.triggers.cron import CronTrigger

    assert window.cron is not None and window.duration is not None
    length = timedelta(seconds=window.duration)
    trigger = CronTrigger.from_crontab(window.cron, timezone="UTC")
    began = trigger.get_next_fire_time(None, now - length)
    return began is not None and began <= now


def _endpoint(checks: Sequence[Any]) -> str:
    return next((c.url for c in checks if isinstance(c, HttpCheck)), "")


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise RemediationError("invalid", f"{what} is a map of names to text")
    return {str(k): v for k, v in value.items()}


def _dry_run(runbook: Runbook, context: dict[str, Any]) -> list[dict[str, Any]]:
    from nebula.kinds.runbooks.expressions import evaluate

    context = {**context, "steps": {}}
    steps = []
    for step in runbook.steps:
        runs = True
        if step.condition:
            try:
                runs = evaluate(step.condition, context)
            except ValueError:
                runs = False
        steps.append({"name": step.name, "action": step.action, "would_run": runs})
        context["steps"][step.key] = StepState(step.key, "ok" if runs else "skipped").view()
    return steps


class _Secrets(Mapping[str, str]):
    """`${secret:NAME}` in a channel's URL, revealed from the vault."""

    def __init__(self, reveal: Callable[[str], str]) -> None:
        self._reveal = reveal

    def __getitem__(self, name: str) -> str:
        return self._reveal(name)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


__all__ = ["Finished", "Remediation", "RemediationError"]
