"""Runbooks triggered by nebulad's events and by cron schedules, run by the remediation engine
against a real store (no containers needed: their steps run on the node)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nebula.engine.load import load_desired
from nebula.providers.docker import DockerProvider
from nebula.remediation.actions import ACTIONS
from nebula.remediation.executor import Executor, StepState, Task
from nebula.remediation.service import Remediation
from nebula.store import Store

ON_FAILED_SYNC = """name: on-failed-sync
trigger: {type: event, event: sync_finished.failed}
steps:
  - name: Say
    action: shell
    params: {command: "echo sync {{ event.status }}: {{ event.errors | length }} errors"}
"""

NIGHTLY = """name: nightly
trigger: {type: schedule, schedule: "0 3 * * *"}
steps:
  - name: Say
    action: shell
    params: {command: "echo scheduled {{ schedule }}"}
"""


@pytest.fixture
def remediation(tmp_path: Path) -> Iterator[Remediation]:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "nebula.yaml").write_text("remediation: {cooldown: 0s}\n")
    (tmp_path / "runbooks" / "on-failed-sync.yml").write_text(ON_FAILED_SYNC)
    (tmp_path / "runbooks" / "nightly.yml").write_text(NIGHTLY)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    service = Remediation(store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None)
    service.configure(load_desired(tmp_path), lambda name: "")
    yield service
    service.close()
    store.close()


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_an_event_runs_the_runbooks_answering_it_with_the_event_in_their_context(
    remediation: Remediation,
) -> None:
    remediation.observe("sync_finished", {"status": "succeeded", "errors": []})  # not this one
    remediation.observe("sync_finished", {"status": "failed", "errors": ["a:1: x", "b:2: y"]})
    store = remediation.store
    wait_for(
        lambda: any(e.status == "succeeded" for e in store.executions(runbook="on-failed-sync"))
    )
    (execution,) = store.executions(runbook="on-failed-sync")
    assert execution.step_states["say"]["output"] == "sync failed: 2 errors"
    assert execution.incident_id is None


def test_a_scheduled_runbook_is_due_at_its_cron_time_and_runs_then(
    remediation: Remediation,
) -> None:
    next_runs = remediation.engine.next_runs()
    assert set(next_runs) == {"nightly"}
    due = next_runs["nightly"]
    assert (due.hour, due.minute) == (3, 0) and due > datetime.now(UTC)
    remediation.engine.run_now("nightly")  # as if 03:00 had come
    store = remediation.store
    wait_for(lambda: any(e.status == "succeeded" for e in store.executions(runbook="nightly")))
    (execution,) = store.executions(runbook="nightly")
    assert execution.step_states["say"]["output"] == "scheduled 0 3 * * *"


ECHO_LABEL = """name: echo-label
trigger: {type: alert, alert: custom}
steps:
  - name: Say
    action: shell
    params: {command: "echo {{ labels.service }}"}
"""


def test_a_value_put_into_a_shell_command_is_one_word_never_a_command(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "runbooks" / "echo-label.yml").write_text(ECHO_LABEL)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    service = Remediation(store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None)
    service.configure(load_desired(tmp_path), lambda name: "")
    try:
        pwned = tmp_path / "pwned"
        hostile = f"web; touch {pwned} $(touch {pwned}) `touch {pwned}`"
        service.fire({"name": "custom", "labels": {"service": hostile}}, "test")
        wait_for(lambda: any(e.status == "succeeded" for e in store.executions()))
        (execution,) = store.executions()
        assert execution.step_states["say"]["output"] == hostile
        assert not pwned.exists()
    finally:
        service.close()
        store.close()


class Step:
    """A step as the executor reads it (a workflow's or a runbook's)."""

    def __init__(self, key: str, command: str, retries: int = 0) -> None:
        self.key = self.name = self.title = key
        self.action, self.params = "shell", {"command": command}
        self.condition, self.timeout, self.retries = None, 30.0, retries
        self.requires_approval = False


class Log:
    def __init__(self) -> None:
        self.finished: list[str] = []

    def step_started(self, step: Step, index: int) -> None:
        pass

    def step_finished(self, step: Step, index: int, state: StepState) -> None:
        self.finished.append(step.key)

    def waiting_for_approval(self, step: Step, index: int) -> None:
        raise AssertionError("no step asks for approval")


def executor() -> Executor:
    return Executor(ACTIONS, None, threading.Event(), sleep=lambda seconds: None)


def test_a_diamond_runs_its_middle_in_parallel_and_its_end_once_both_are_done(
    tmp_path: Path,
) -> None:
    # b and c each wait for the other to have started: they finish only if they run at once
    both = f"touch {tmp_path}/$0; until [ -e {tmp_path}/b ] && [ -e {tmp_path}/c ]; do sleep 0.05; done"
    tasks = [
        Task(Step("a", "echo a")),
        Task(Step("b", f"sh -c '{both}' b"), needs=("a",)),
        Task(Step("c", f"sh -c '{both}' c"), needs=("a",)),
        Task(Step("d", "echo d"), needs=("b", "c")),
    ]
    log = Log()
    finished = executor().run(None, tasks, {}, log)
    assert finished.status == "succeeded", finished.error
    assert log.finished[0] == "a" and log.finished[-1] == "d"
    assert {s: finished.steps[s].status for s in "abcd"} == dict.fromkeys("abcd", "ok")


def test_retries_until_the_third_try_and_a_failure_skips_only_its_dependants(
    tmp_path: Path,
) -> None:
    flaky = f"echo x >> {tmp_path}/tries; [ $(wc -l < {tmp_path}/tries) -ge 3 ]"
    tasks = [
        Task(Step("flaky", flaky, retries=3), delay=0.5, doubling=True),
        Task(Step("broken", "echo no; exit 3")),
        Task(Step("after_broken", "echo never"), needs=("broken",)),
        Task(Step("after_that", "echo never"), needs=("after_broken",)),
        Task(Step("beside", "echo fine"), needs=("flaky",)),
    ]
    slept: list[float] = []
    run = Executor(ACTIONS, None, threading.Event(), sleep=slept.append)
    finished = run.run(None, tasks, {}, Log())
    assert finished.steps["flaky"].status == "ok" and finished.steps["flaky"].attempts == 3
    assert slept == [0.5, 1.0]  # the backoff doubles
    assert finished.steps["beside"].status == "ok"
    assert [finished.steps[k].status for k in ("after_broken", "after_that")] == ["skipped"] * 2
    assert finished.steps["after_broken"].output == "needs broken, which failed"
    assert finished.status == "failed" and finished.error == "step 'broken' failed: no"


ACTIONS_RUNBOOK = """name: tour
trigger: {{type: alert, alert: custom}}
steps:
  - name: Ask
    action: http
    params: {{url: "http://127.0.0.1:{port}/ready", expected_status: 200}}
  - name: Port
    action: health_check
    params: {{host: 127.0.0.1, port: {port}}}
  - name: Slow
    action: wait
    params: {{duration: 5s}}
    timeout: 0.3s
    on_failure: continue
  - name: Note
    action: incident
    params: {{severity: critical, annotate: "{{{{ steps.ask.output }}}}"}}
  - name: Close
    action: incident
    params: {{resolve: true, resolution: "checked by the tour"}}
"""


def test_http_tcp_timeouts_and_incident_steps_do_what_they_say(tmp_path: Path) -> None:
    import http.server
    import threading as threads

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 404)
            self.end_headers()
            self.wfile.write(b"ready")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threads.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "runbooks" / "tour.yml").write_text(ACTIONS_RUNBOOK.format(port=port))
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    service = Remediation(store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None)
    service.configure(load_desired(tmp_path), lambda name: "")
    try:
        received = service.fire({"name": "custom", "labels": {"installation": "blog"}}, "test")
        assert received.incident is not None
        wait_for(lambda: any(e.status != "running" for e in store.executions()))
        (execution,) = store.executions()
        states = execution.step_states
        assert states["ask"]["status"] == "ok" and "200" in states["ask"]["output"]
        assert states["port"]["status"] == "ok"
        assert states["slow"]["status"] == "failed" and "timed out" in states["slow"]["error"]
        assert execution.status == "failed"  # on_failure: continue goes on, yet it failed
        incident = service.incidents.get(received.incident.id)
        assert incident is not None
        assert (incident.severity, incident.status) == ("critical", "resolved")
        assert incident.resolution == "checked by the tour"
        assert any(e.kind == "note" and e.message == "200 ready" for e in incident.timeline)
    finally:
        service.close()
        store.close()
        server.shutdown()


MAINTENANCE = """maintenance:
  - {match: {installation: blog}, start: "2000-01-01T00:00:00+00:00", end: "2100-01-01T00:00:00+00:00", comment: the blog moves house}
"""


def test_a_maintenance_window_keeps_runbooks_quiet_for_what_it_matches(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "nebula.yaml").write_text(MAINTENANCE)
    (tmp_path / "runbooks" / "echo-label.yml").write_text(ECHO_LABEL)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    service = Remediation(store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None)
    service.configure(load_desired(tmp_path), lambda name: "")
    try:
        quiet = service.fire({"name": "custom", "labels": {"installation": "blog"}}, "test")
        heard = service.fire({"name": "custom", "labels": {"installation": "wiki"}}, "test")
        wait_for(lambda: len(store.executions()) == 1 and store.executions()[0].status != "running")
        (execution,) = store.executions()  # only wiki's alert ran the runbook
        assert heard.incident is not None and execution.incident_id == heard.incident.id
        assert quiet.incident is not None
        timeline = service.incidents.get(quiet.incident.id)
        assert timeline is not None
        assert any(
            e.kind == "silenced" and "the blog moves house" in e.message for e in timeline.timeline
        )
    finally:
        service.close()
        store.close()
