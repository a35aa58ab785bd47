"""Alerts, incidents, silences and the runbook tables, on SQLite and on PostgreSQL (every
`database_url` test runs on both). Time comes from a clock the tests move, never from sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from nebula.errors import NotFoundError, StateError
from nebula.remediation.alerts import Alert, from_alertmanager
from nebula.remediation.incidents import Incidents
from nebula.remediation.silences import Silences, parse_matcher
from nebula.store import Store
from nebula.store.records import RunbookRecord

START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as s:
        yield s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def incidents(store: Store, clock: Clock) -> Incidents:
    return Incidents(store, reopen_window=600, clock=clock)


def unhealthy(service: str = "web", installation: str | None = "blog", **extra: str) -> Alert:
    labels = {"service": service, **({"installation": installation} if installation else {})}
    return Alert("unhealthy", {**labels, **extra}, source="health")


def cleared(alert: Alert) -> Alert:
    return Alert(alert.name, alert.labels, alert.annotations, "resolved", alert.source)


# -- alerts ------------------------------------------------------------------------------------


def test_an_alert_is_known_by_its_name_and_labels_but_not_its_severity() -> None:
    warning = unhealthy(severity="warning")
    critical = unhealthy(severity="critical")

    assert warning.fingerprint == critical.fingerprint
    assert critical.severity == "critical" and unhealthy().severity == "warning"
    assert unhealthy("db").fingerprint != warning.fingerprint
    assert unhealthy("db").group_key == unhealthy("web").group_key == "installation=blog"
    assert unhealthy("db", installation=None).group_key == "service=db"
    assert Alert("disk_pressure", {}).group_key == "alert=disk_pressure"
    labels = {"service": "web"}
    alert = Alert("unhealthy", labels)
    labels["service"] = "db"
    assert alert.labels == {"service": "web"}  # its own copy, read-only


ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="BlogDown"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "nebula",
    "groupLabels": {"alertname": "BlogDown"},
    "commonLabels": {"alertname": "BlogDown", "installation": "blog"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "BlogDown", "installation": "blog", "severity": "critical"},
            "annotations": {"summary": "the blog answers 502"},
            "startsAt": "2026-12-04T09:52:26.739266876+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "c6eadffa33fcdf37",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "DiskFull", "node": "pi"},
            "annotations": {},
            "startsAt": "2026-12-04T07:00:00Z",
            "endsAt": "2026-12-04T08:00:00Z",
            "generatorURL": "",
            "fingerprint": "1a30ba71cca2921f",
        },
    ],
}


def test_alertmanager_webhook_payload_becomes_alerts() -> None:
    blog, disk = from_alertmanager(ALERTMANAGER)

    assert (blog.name, blog.status, blog.source, blog.severity) == (
        "BlogDown",
        "firing",
        "alertmanager",
        "critical",
    )
    assert blog.annotations["summary"] == "the blog answers 502"
    assert blog.starts_at == datetime(2026, 12, 4, 7, 52, 26, 739266, tzinfo=UTC)
    assert blog.group_key == "installation=blog"
    assert (disk.name, disk.status, disk.group_key) == ("DiskFull", "resolved", "alert=DiskFull")


def _broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    import copy

    payload = copy.deepcopy(ALERTMANAGER)
    target: Any = payload
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "said"),
    [
        (("version",), "3", "version: '3'; Nebula reads Alertmanager's webhook payload version 4"),
        (("alerts",), None, "alerts: missing or not a list"),
        (("alerts", 1, "status"), "pending", "alerts[1].status: 'pending'"),
        (("alerts", 0, "labels", "alertname"), None, "alerts[0].labels.alertname: missing"),
        (("alerts", 0, "labels", "severity"), 3, "alerts[0].labels.severity: 3 is not a string"),
        (("alerts", 1, "startsAt"), "yesterday", "alerts[1].startsAt: 'yesterday' is not"),
        (("alerts", 0), ["x"], "alerts[0]: not a JSON object"),
    ],
)
def test_a_broken_alertmanager_payload_names_the_field(
    path: tuple[Any, ...], value: Any, said: str
) -> None:
    with pytest.raises(ValueError, match="^" + __import__("re").escape(said)):
        from_alertmanager(_broken(path, value))


# -- incidents ---------------------------------------------------------------------------------


def test_a_flood_of_duplicates_is_one_incident_and_one_folded_entry(
    incidents: Incidents, clock: Clock
) -> None:
    first = incidents.receive(unhealthy())
    outcomes = set()
    for _ in range(99):
        clock.now += 1
        outcomes.add(incidents.receive(unhealthy()).outcome)

    assert first.outcome == "opened" and outcomes == {"folded"}
    assert len(incidents.list()) == 1
    incident = incidents.get(first.incident.id)  # type: ignore[union-attr]
    assert incident is not None
    assert [e.kind for e in incident.timeline] == ["alert", "folded"]
    folded = incident.timeline[1]
    assert folded.detail["count"] == 99
    assert "fired again ×99" in folded.message
    assert incident.last_alert_at == clock.at()


def test_alerts_of_one_installation_join_and_resolve_it_when_all_clear(
    incidents: Incidents, clock: Clock
) -> None:
    web, db = unhealthy("web"), unhealthy("db", severity="critical")
    opened = incidents.receive(web)
    joined = incidents.receive(db)

    assert (opened.outcome, joined.outcome) == ("opened", "joined")
    assert joined.incident is not None and joined.incident.id == opened.incident.id  # type: ignore[union-attr]
    assert joined.incident.severity == "critical"  # the worst of its alerts

    clock.now += 30
    assert incidents.receive(cleared(web)).outcome == "cleared"
    assert incidents.list(status="open")[0].id == joined.incident.id
    clock.now += 30
    done = incidents.receive(cleared(db))

    assert done.outcome == "resolved" and done.incident is not None
    assert done.incident.status == "resolved"
    assert done.incident.resolution == "alerts cleared"
    assert done.incident.resolved_at == clock.at()
    timeline = incidents.get(done.incident.id).timeline  # type: ignore[union-attr]
    assert [e.kind for e in timeline] == ["alert", "alert", "alert", "alert", "resolved"]
    assert timeline[-1].message == "every alert cleared: resolved by itself"
    # a resolved alert nobody holds changes nothing
    assert incidents.receive(cleared(db)).outcome == "ignored"


def test_an_incident_coming_back_within_the_window_is_reopened_after_it_a_new_one(
    incidents: Incidents, clock: Clock
) -> None:
    first = incidents.receive(unhealthy()).incident
    assert first is not None
    incidents.receive(cleared(unhealthy()))

    clock.now += 599
    again = incidents.receive(unhealthy())

    assert again.outcome == "reopened" and again.incident is not None
    assert (again.incident.id, again.incident.status, again.incident.reopened) == (
        first.id,
        "open",
        1,
    )
    assert again.incident.resolved_at is None and again.incident.resolution is None
    entry = incidents.get(first.id).timeline[-1]  # type: ignore[union-attr]
    assert entry.kind == "reopened" and "599s after the incident resolved" in entry.message

    incidents.receive(cleared(unhealthy()))
    clock.now += 601
    later = incidents.receive(unhealthy())

    assert later.outcome == "opened" and later.incident is not None
    assert later.incident.id != first.id
    assert len(incidents.list()) == 2


def test_people_acknowledge_and_resolve_and_the_timeline_names_them(
    incidents: Incidents,
) -> None:
    incident = incidents.receive(unhealthy()).incident
    assert incident is not None

    acked = incidents.acknowledge(incident.id, "user:alice")
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "user:alice")
    assert incidents.receive(unhealthy("db")).outcome == "joined"  # still its group's incident
    done = incidents.resolve(incident.id, "user:bob", "rebooted the NAS")

    assert (done.status, done.resolution) == ("resolved", "rebooted the NAS")
    timeline = incidents.get(incident.id).timeline  # type: ignore[union-attr]
    people = [(e.kind, e.actor, e.message) for e in timeline if e.actor]
    assert people == [
        ("acknowledged", "user:alice", "acknowledged by user:alice"),
        ("resolved", "user:bob", "resolved by user:bob: rebooted the NAS"),
    ]
    with pytest.raises(StateError, match=f"incident {incident.id} is already resolved"):
        incidents.resolve(incident.id, "user:bob")
    with pytest.raises(StateError, match="already resolved"):
        incidents.acknowledge(incident.id, "user:alice")
    with pytest.raises(NotFoundError, match="no incident nope; `nebula incidents list`"):
        incidents.resolve("nope", "user:bob")


def test_severity_notes_and_escalation(incidents: Incidents) -> None:
    incident = incidents.receive(unhealthy()).incident
    assert incident is not None

    incidents.set_severity(incident.id, "critical", "user:alice")
    incidents.note(incident.id, "step", "Attempt restart: ok", {"container": "blog-web-1"})
    first = incidents.escalate(incident.id, "escalated to discord, email")
    second = incidents.escalate(incident.id, "escalated to discord, email")

    shown = incidents.get(incident.id)
    assert shown is not None
    assert (shown.severity, shown.escalated, first, second) == ("critical", True, True, False)
    assert [e.kind for e in shown.timeline] == ["alert", "note", "step", "escalated"]
    with pytest.raises(ValueError, match="severity 'urgent': use one of info, warning, critical"):
        incidents.set_severity(incident.id, "urgent", "user:alice")
    with pytest.raises(ValueError, match="timeline kind 'oops'"):
        incidents.note(incident.id, "oops", "x")
    with pytest.raises(ValueError, match="incident status 'closed'"):
        incidents.list(status="closed")


def test_a_storm_of_one_installation_is_one_incident_of_many_services_many(
    incidents: Incidents,
) -> None:
    for i in range(100):
        incidents.receive(unhealthy(f"svc{i}", installation="media"))
    assert len(incidents.list()) == 1

    outcomes = {
        incidents.receive(unhealthy(f"app{i}", installation=None)).outcome for i in range(100)
    }

    assert outcomes == {"opened"}
    assert len(incidents.list(limit=500)) == 101


def test_secrets_in_alerts_and_timeline_details_are_masked(incidents: Incidents) -> None:
    alert = Alert(
        "sync_failed",
        {"installation": "blog"},
        {"description": "git fetch https://bot:hunter2secret@git.example/repo failed"},
    )
    incident = incidents.receive(alert).incident
    assert incident is not None
    incidents.note(incident.id, "step", "ran", {"env": {"DB_PASSWORD": "s3cret-value"}})

    shown = incidents.get(incident.id)
    assert shown is not None
    text = repr(shown.timeline)
    assert "hunter2secret" not in text and "s3cret-value" not in text
    assert shown.timeline[1].detail["env"]["DB_PASSWORD"] == "••••"
    assert (
        "https://bot:••••@git.example/repo"
        in shown.timeline[0].detail["annotations"]["description"]
    )


# -- silences ----------------------------------------------------------------------------------


def test_a_silence_mutes_what_it_matches_until_it_ends(
    store: Store, incidents: Incidents, clock: Clock
) -> None:
    silences = Silences(store, clock=clock)
    silence = silences.add({"installation": "blog"}, 7200, "moving the NAS", "user:alice")

    muted = incidents.receive(unhealthy())
    assert (muted.outcome, muted.incident) == ("silenced", None)
    assert incidents.list() == []
    assert incidents.receive(unhealthy(installation="wiki")).outcome == "opened"
    assert [s.id for s in silences.active()] == [silence.id]

    clock.now += 7200
    assert silences.active() == []
    assert incidents.receive(unhealthy()).outcome == "opened"


def test_a_silence_added_while_an_incident_is_open_says_so_on_its_timeline(
    store: Store, incidents: Incidents, clock: Clock
) -> None:
    incident = incidents.receive(unhealthy()).incident
    assert incident is not None
    silences = Silences(store, clock=clock)
    silence = silences.add([parse_matcher("service=~we.*")], 3600, "", "user:alice")

    for _ in range(3):
        assert incidents.receive(unhealthy()).outcome == "silenced"
    assert incidents.receive(unhealthy("db")).outcome == "joined"  # `db` is not matched

    silences.remove(silence.id, "user:bob")
    assert incidents.receive(unhealthy()).outcome == "folded"
    timeline = incidents.get(incident.id).timeline  # type: ignore[union-attr]
    assert [e.kind for e in timeline] == ["alert", "silenced", "alert", "folded"]
    assert timeline[1].message == (
        f"unhealthy on blog/web silenced by {silence.id} (no comment) ×3"
    )
    with pytest.raises(StateError, match=f"silence {silence.id} already ended"):
        silences.remove(silence.id, "user:bob")
    with pytest.raises(NotFoundError, match="no silence nope"):
        silences.remove("nope", "user:bob")


@pytest.mark.parametrize(
    ("labels", "matcher", "muted"),
    [
        ({"installation": "blog"}, "installation!=blog", False),
        ({"installation": "wiki"}, "installation!=blog", True),
        ({"service": "web-1"}, "service=~web", False),  # anchored: the whole value
        ({"service": "web-1"}, "service=~web-.*", True),
        ({"service": "db"}, "service!~web.*", True),
        ({}, "node=", True),  # a missing label is ""
    ],
)
def test_matchers_work_like_alertmanagers(
    store: Store, clock: Clock, labels: dict[str, str], matcher: str, muted: bool
) -> None:
    silences = Silences(store, clock=clock)
    silences.add([parse_matcher(matcher)], 60, "", "user:alice")

    assert (silences.matching(labels) is not None) == muted


@pytest.mark.parametrize(
    ("matchers", "duration", "said"),
    [
        ({}, 60, "a silence needs at least one matcher"),
        ({"installation": "blog"}, 0, "a silence lasts a positive time"),
        ({"in stallation": "blog"}, 60, "'in stallation' is not a label name"),
        ([("service", "=~", "(web")], 60, "service=~(web: bad regular expression"),
    ],
)
def test_a_silence_that_cannot_work_is_refused_saying_why(
    store: Store, matchers: Any, duration: float, said: str
) -> None:
    with pytest.raises(ValueError, match=__import__("re").escape(said)):
        Silences(store).add(matchers, duration, "", "user:alice")
    with pytest.raises(ValueError, match="write LABEL=VALUE"):
        parse_matcher("installation")


# -- runbooks and their executions -------------------------------------------------------------


def runbook(name: str, digest: str = "d1", builtin: bool = False) -> RunbookRecord:
    definition = {"name": name, "steps": [{"name": "Log incident", "action": "log"}]}
    return RunbookRecord(name, f"runbooks/{name}.yml", digest, definition, builtin)


def test_replace_runbooks_keeps_exactly_the_loaded_ones(store: Store) -> None:
    store.replace_runbooks([runbook("restart-unhealthy-service", builtin=True), runbook("mine")])
    store.replace_runbooks([runbook("mine", "d2"), runbook("sync-failed", builtin=True)])

    assert store.runbooks() == [runbook("mine", "d2"), runbook("sync-failed", builtin=True)]
    store.replace_runbooks([])
    assert store.runbooks() == []


def test_an_execution_records_each_step_and_its_end(store: Store, incidents: Incidents) -> None:
    incident = incidents.receive(unhealthy()).incident
    assert incident is not None
    run = store.start_execution(
        "restart-unhealthy-service",
        steps_total=2,
        trigger={"alert": "unhealthy", "labels": {"service": "web"}},
        incident_id=incident.id,
        node="pi",
    )
    store.record_step(run.id, "log_incident", {"status": "ok"}, steps_completed=1)
    store.record_step(
        run.id,
        "attempt_restart",
        {"status": "ok", "output": "API_TOKEN=abc123xyz"},
        steps_completed=2,
    )
    done = store.finish_execution(
        run.id, "succeeded", output={"attempt_restart": {"password": "hunter2"}}
    )

    assert (done.status, done.steps_completed, done.steps_total, done.node) == (
        "succeeded",
        2,
        2,
        "pi",
    )
    assert done.step_states == {
        "log_incident": {"status": "ok"},
        "attempt_restart": {"status": "ok", "output": "API_TOKEN=••••"},
    }
    assert done.output == {"attempt_restart": {"password": "••••"}}
    assert done.completed_at is not None and done.error is None
    assert store.execution(run.id) == done
    assert store.executions(incident_id=incident.id) == [done]
    assert store.executions(runbook="restart-unhealthy-service") == [done]
    assert store.executions(runbook="other") == []
    with pytest.raises(NotFoundError, match="no runbook execution nope"):
        store.finish_execution("nope", "failed")


def test_a_restart_interrupts_running_executions_but_not_those_waiting_for_approval(
    database_url: str,
) -> None:
    with Store(database_url) as before:
        running = before.start_execution("restart", steps_total=3, trigger={})
        before.record_step(running.id, "log_incident", {"status": "ok"}, steps_completed=1)
        waiting = before.start_execution("prune", steps_total=2, trigger={})
        before.record_step(
            waiting.id,
            "delete_images",
            {"status": "waiting"},
            steps_completed=0,
            status="waiting",
            approval="pending",
        )

    with Store(database_url) as after:  # the daemon starts again
        assert after.interrupt_executions("nebulad stopped during the run") == [running.id]
        interrupted = after.execution(running.id)
        assert interrupted is not None
        assert (interrupted.status, interrupted.steps_completed, interrupted.error) == (
            "interrupted",
            1,
            "nebulad stopped during the run",
        )
        assert interrupted.step_states == {"log_incident": {"status": "ok"}}

        approved = after.decide_approval(waiting.id, True, "user:alice")
        assert (approved.status, approved.approval, approved.approval_by) == (
            "waiting",
            "approved",
            "user:alice",
        )
        with pytest.raises(StateError, match="is not waiting for an approval"):
            after.decide_approval(waiting.id, False, "user:bob")
