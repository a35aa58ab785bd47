"""Workflows run by nebulad's engine against a real store: a DAG by hand, the concurrency
policies, and cron schedules kept in the database across a restart (missed runs follow
`catch_up`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nebula.engine.load import load_desired
from nebula.providers.docker import DockerProvider
from nebula.remediation.service import Remediation
from nebula.remediation.workflows import JOBS_TABLE
from nebula.store import Store

DIAMOND = """name: diamond
on: {manual: true}
steps:
  - {id: a, action: shell, params: {command: "echo 41"}}
  - {id: b, action: shell, params: {command: "echo $(( {{ steps.a.output }} + 1 ))"}, needs: [a]}
  - {id: c, action: shell, params: {command: "exit 3"}, needs: [a], continue_on_error: true}
  - {id: d, action: shell, params: {command: "echo b said {{ steps.b.output }}"}, needs: [b, c]}
"""

SLOW = """name: slow
on: {{manual: true}}
concurrency: {concurrency}
steps:
  - {{id: wait, action: wait, params: {{duration: 3s}}}}
"""

NIGHTLY = """name: tick
on: {{schedule: "0 3 * * *"}}
catch_up: {catch_up}
steps:
  - {{id: say, action: shell, params: {{command: "echo tick"}}}}
"""


def repo(root: Path, workflows: dict[str, str]) -> Path:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text("")
    for name, text in workflows.items():
        (root / "workflows" / f"{name}.yaml").write_text(text)
    return root


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path}/nebula.db") as opened:
        yield opened


def remediation(store: Store, root: Path) -> Remediation:
    service = Remediation(store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None)
    service.configure(load_desired(root), lambda name: "")
    return service


def runs(store: Store, name: str) -> list[str]:
    return [e.status for e in store.executions(runbook=name, kind="workflow")]


def test_a_dag_runs_by_hand_with_outputs_and_a_tolerated_failure(
    tmp_path: Path, store: Store
) -> None:
    service = remediation(store, repo(tmp_path / "repo", {"diamond": DIAMOND}))
    try:
        run_id = service.workflows.run_by_hand("diamond", "ada")
        assert run_id is not None
        wait_for(lambda: runs(store, "diamond") == ["succeeded"])
        run = store.execution(run_id)
        assert run is not None and run.kind == "workflow" and run.steps_completed == 4
        states = run.step_states
        assert states["b"]["output"] == "42" and states["d"]["output"] == "b said 42"
        assert states["c"]["status"] == "failed"  # continue_on_error: the run still succeeds
    finally:
        service.close()


@pytest.mark.parametrize(
    ("concurrency", "second", "expected"),
    [
        ("skip", None, ["succeeded"]),
        ("queue", "started", ["succeeded", "succeeded"]),
        ("cancel_previous", "started", ["succeeded", "cancelled"]),
    ],
)
def test_concurrency_decides_what_a_second_start_does(
    tmp_path: Path, store: Store, concurrency: str, second: str | None, expected: list[str]
) -> None:
    root = repo(tmp_path / "repo", {"slow": SLOW.format(concurrency=concurrency)})
    service = remediation(store, root)
    try:
        assert service.workflows.run_by_hand("slow", "ada") is not None
        again = service.workflows.run_by_hand("slow", "ada")
        assert (again is not None) == (second == "started")
        wait_for(lambda: sorted(runs(store, "slow")) == sorted(expected), timeout=30)
    finally:
        service.close()


def miss_runs(store: Store, minutes: int) -> None:
    """As if nebulad had been down: the stored job was due `minutes` ago. Written into the job
    store's row (its time column and its state), as no scheduler runs while nebulad is down."""
    import pickle

    from sqlalchemy import text

    due = datetime.now(UTC) - timedelta(minutes=minutes)
    with store.engine.begin() as db:
        blob = db.execute(text(f"SELECT job_state FROM {JOBS_TABLE} WHERE id = 'tick'")).scalar()
        state = pickle.loads(blob)
        state["next_run_time"] = due
        db.execute(
            text(f"UPDATE {JOBS_TABLE} SET job_state = :s, next_run_time = :t WHERE id = 'tick'"),
            {"s": pickle.dumps(state, pickle.HIGHEST_PROTOCOL), "t": due.timestamp()},
        )


@pytest.mark.parametrize(("catch_up", "expected"), [("once", ["succeeded"]), ("none", [])])
def test_a_schedule_survives_a_restart_and_missed_runs_follow_catch_up(
    tmp_path: Path, store: Store, catch_up: str, expected: list[str]
) -> None:
    root = repo(tmp_path / "repo", {"tick": NIGHTLY.format(catch_up=catch_up)})
    first = remediation(store, root)
    due = first.workflows.next_runs()["tick"]  # a nightly run: none comes during the test
    assert (due.hour, due.minute) == (3, 0) and due > datetime.now(UTC)
    first.close()  # nebulad stops, and the night's run goes by
    miss_runs(store, minutes=5)

    second = remediation(store, root)  # the job is read back from the database
    try:
        wait_for(lambda: runs(store, "tick") == expected, timeout=10)
        time.sleep(1.0)  # and no second run of what was missed comes after
        assert runs(store, "tick") == expected
        assert second.workflows.next_runs()["tick"] > datetime.now(UTC)
    finally:
        second.close()
