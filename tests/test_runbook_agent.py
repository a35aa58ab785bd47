"""The runbook step `action: agent`: its params checked at file:line, an agent's answer on the
incident's timeline and in `steps.X.output`, and a clear failure where no agent can run. The
agent here is a small Python callable reading the real store (the loop is tested on its own);
the runbooks run in the remediation engine against a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.providers.docker import DockerProvider
from nebula.remediation.service import Remediation
from nebula.store import Store
from nebula.store.records import ExecutionInfo

DIAGNOSE = """name: diagnose
trigger: {type: alert, alert: custom}
steps:
  - name: Diagnose
    action: agent
    params:
      agent: ops-assistant
      task: "Why is {{ labels.installation }} down? Incident {{ incident.id }}."
      timeout: 30s
  - name: Tell
    action: log
    params: {message: "agent said: {{ steps.diagnose.output }}"}
"""


@dataclass(frozen=True)
class Run:
    status: str
    output: str | None
    execution_id: str


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path}/nebula.db") as opened:
        yield opened


@pytest.fixture
def remediation(tmp_path: Path, store: Store) -> Iterator[Remediation]:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "runbooks" / "diagnose.yml").write_text(DIAGNOSE)
    service = Remediation(store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None)
    service.configure(load_desired(tmp_path), lambda name: "")
    yield service
    service.close()


def finished(store: Store) -> ExecutionInfo:
    deadline = time.monotonic() + 20
    while not any(e.status != "running" for e in store.executions()):
        assert time.monotonic() < deadline, "the runbook did not finish"
        time.sleep(0.05)
    (execution,) = store.executions()
    return execution


def agent_reading(
    store: Store, calls: list[tuple[str, str, str | None]], status: str = "completed"
) -> Callable[[str, str, str | None], Run]:
    """An agent that looks the incident up in the store and answers with its title."""

    def run(agent: str, task: str, incident_id: str | None) -> Run:
        calls.append((agent, task, incident_id))
        from nebula.store.incidents import IncidentStore

        incident = IncidentStore(store).get(incident_id or "")
        title = incident.title if incident else "no incident"
        return Run(status, f"{title}: the disk is full", "exec-1")

    return run


def test_the_agents_summary_goes_on_the_timeline_and_into_the_steps_output(
    remediation: Remediation, store: Store
) -> None:
    calls: list[tuple[str, str, str | None]] = []
    remediation.engine.services.agent = agent_reading(store, calls)
    received = remediation.fire({"name": "custom", "labels": {"installation": "blog"}}, "test")
    assert received.incident is not None

    execution = finished(store)
    incident_id = received.incident.id
    assert calls == [("ops-assistant", f"Why is blog down? Incident {incident_id}.", incident_id)]
    summary = f"{received.incident.title}: the disk is full"
    steps = execution.step_states
    assert execution.status == "succeeded"
    assert steps["diagnose"]["output"] == summary
    assert steps["diagnose"]["outputs"] == {"execution": "exec-1", "status": "completed"}
    assert steps["tell"]["output"] == f"agent said: {summary}"
    incident = remediation.incidents.get(incident_id)
    assert incident is not None
    (entry,) = [e for e in incident.timeline if e.kind == "agent"]
    assert entry.message == summary and entry.actor == "agent ops-assistant"
    assert entry.detail == {"agent": "ops-assistant", "execution": "exec-1", "status": "completed"}


def test_a_run_that_did_not_complete_fails_the_step_and_says_so_on_the_timeline(
    remediation: Remediation, store: Store
) -> None:
    remediation.engine.services.agent = agent_reading(store, [], status="blocked")
    received = remediation.fire({"name": "custom", "labels": {"installation": "blog"}}, "test")
    assert received.incident is not None

    execution = finished(store)
    assert execution.status == "failed"
    assert execution.step_states["diagnose"]["error"].startswith(
        "agent ops-assistant ended blocked"
    )
    assert execution.step_states["tell"]["status"] == "skipped"
    incident = remediation.incidents.get(received.incident.id)
    assert incident is not None
    assert any(
        e.kind == "agent" and e.message.startswith("agent ops-assistant ended blocked")
        for e in incident.timeline
    )


def test_without_an_ai_runtime_the_step_fails_clearly(
    remediation: Remediation, store: Store
) -> None:
    assert remediation.engine.services.agent is None
    remediation.fire({"name": "custom", "labels": {"installation": "blog"}}, "test")

    execution = finished(store)
    assert execution.status == "failed"
    assert "agents are not available here" in execution.step_states["diagnose"]["error"]


def test_an_agent_steps_params_are_checked_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "runbooks" / "bad.yml").write_text(
        "name: bad\ntrigger: {type: manual}\nsteps:\n"
        "  - name: Ask\n    action: agent\n    params: {agent: Ops_Bot, task: hi}\n"
        "  - name: Ask again\n    action: agent\n    params: {agent: ops, tsk: hi}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    issues = [str(issue) for issue in caught.value.issues]
    assert any("bad.yml:6" in i and "steps[0].params.agent" in i for i in issues), issues
    assert any("bad.yml:9" in i and "task" in i for i in issues), issues
