"""The store's agents, functions and agent runs, on SQLite and PostgreSQL: the seed's columns
filled from the documents, a run's steps, state and approval, runs cut short by a restart,
and secrets masked before anything reaches the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from nebula.errors import NotFoundError, StateError
from nebula.store import Store
from nebula.store.records import AgentRecord, FunctionRecord, NewAgentStep

HELPER = {
    "name": "helper",
    "description": "Helps",
    "systemPrompt": "You help.",
    "model": "ollama:llama3.2",
    "temperature": 0.2,
    "tools": ["status", "restart"],
    "context": {"maxTokens": 256, "includeHistory": False},
    "maxTurns": 4,
}
STATUS = {
    "name": "status",
    "description": "The daemon's state",
    "parameters": {"type": "object", "properties": {}},
    "implementation": "status",
    "implementation_type": "code",
}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as opened:
        yield opened


@pytest.fixture
def raw(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def document(value: Any) -> Any:
    """A JSON column as read raw: decoded by PostgreSQL's driver, text on SQLite."""
    return json.loads(value) if isinstance(value, str) else value


def test_agents_and_functions_fill_the_seed_columns(store: Store, raw: sa.Engine) -> None:
    agent = AgentRecord("helper", "agents/helper.yaml", "d1", HELPER)
    function = FunctionRecord("status", "functions/status.yaml", "d1", STATUS)
    store.replace_agents([agent])
    store.replace_functions([function])
    assert store.agents() == [agent] and store.functions() == [function]
    with raw.connect() as conn:
        row = conn.execute(
            sa.text("SELECT name, system_prompt, model, temperature, tools, config FROM agents")
        ).one()
        fn = conn.execute(
            sa.text("SELECT name, implementation, implementation_type, parameters FROM functions")
        ).one()
    assert row[:4] == ("helper", "You help.", "ollama:llama3.2", 0.2)
    assert document(row[4]) == ["status", "restart"]
    assert document(row[5]) == {
        "context": {"maxTokens": 256, "includeHistory": False},
        "maxTurns": 4,
    }
    assert fn[:3] == ("status", "status", "code")

    changed = AgentRecord("helper", "agents/helper.yaml", "d2", HELPER | {"model": "gpt-4o"})
    store.replace_agents([changed])
    assert [a.model for a in store.agents()] == ["gpt-4o"]
    store.replace_functions([])
    assert store.functions() == []


def test_a_run_records_its_steps_state_and_end(store: Store) -> None:
    store.replace_agents([AgentRecord("helper", "agents/helper.yaml", "d1", HELPER)])
    run = store.start_agent_execution("helper", "why is the blog down?", actor="alice")
    started = store.agent_execution(run)
    assert (started.status, started.agent_name, started.actor) == ("running", "helper", "alice")
    assert started.agent_id is not None and started.steps == () and started.state == {}

    store.record_agent_step(run, "turn", {"content": "let me look"}, tokens=12, duration_ms=40)
    store.record_agent_step(run, "tool_call", {"name": "status", "result": "ok"}, duration_ms=3)
    state = {"messages": [{"role": "user", "content": "why is the blog down?"}], "turns": 1}
    store.save_agent_state(run, state, status="running", tokens_used=12)
    store.finish_agent_execution(
        run, "completed", output="It is up.", tokens_used=30, duration_ms=900
    )

    done = store.agent_execution(run)
    assert (done.status, done.output, done.tokens_used, done.duration_ms) == (
        "completed",
        "It is up.",
        30,
        900,
    )
    assert done.completed_at is not None and done.state == state and done.pending is None
    assert [(s.seq, s.kind, s.tokens, s.duration_ms) for s in done.steps] == [
        (1, "turn", 12, 40),
        (2, "tool_call", 0, 3),
    ]
    assert done.steps[1].detail == {"name": "status", "result": "ok"}

    other = store.start_agent_execution("other", "hi", actor="bob", incident_id=None)
    assert store.agent_execution(other).agent_id is None  # no such agent recorded
    assert [r.id for r in store.agent_executions()] == [other, run]
    assert [r.id for r in store.agent_executions(agent="helper")] == [run]
    assert len(store.agent_executions(limit=1)) == 1
    with pytest.raises(NotFoundError):
        store.agent_execution("nope")
    with pytest.raises(NotFoundError):
        store.record_agent_step("nope", "turn", {})

    store.replace_agents([])  # the agent leaves the repo: its runs stay, by name
    kept = store.agent_execution(run)
    assert (kept.agent_name, kept.agent_id, len(kept.steps)) == ("helper", None, 2)


def test_a_step_is_recorded_with_the_state_after_it_and_with_the_end(store: Store) -> None:
    run = store.start_agent_execution("helper", "why is the blog down?", actor="alice")
    store.record_agent_step(run, "turn", {"content": "let me look"}, tokens=12, duration_ms=40)
    state = {"messages": [{"role": "tool", "content": "DB_PASSWORD=hunter2-4471"}], "turns": 1}
    called = NewAgentStep("tool_call", {"name": "logs", "result": "DB_PASSWORD=hunter2-4471"}, 0, 3)
    store.save_agent_state(run, state, status="running", tokens_used=12, step=called)
    found = store.agent_execution(run)
    assert (found.status, found.tokens_used, found.pending) == ("running", 12, None)
    assert found.state == {
        "messages": [{"role": "tool", "content": "DB_PASSWORD=••••"}],
        "turns": 1,
    }
    assert found.steps[1].detail == {"name": "logs", "result": "DB_PASSWORD=••••"}

    answered = NewAgentStep("turn", {"n": 2, "reply": "It is up."}, 20, 50)
    store.finish_agent_execution(
        run, "completed", output="It is up.", tokens_used=32, duration_ms=99, step=answered
    )
    done = store.agent_execution(run)
    assert (done.status, done.output, done.tokens_used) == ("completed", "It is up.", 32)
    assert [(s.seq, s.kind, s.tokens, s.duration_ms) for s in done.steps] == [
        (1, "turn", 12, 40),
        (2, "tool_call", 0, 3),
        (3, "turn", 20, 50),
    ]
    with pytest.raises(NotFoundError):
        store.save_agent_state("nope", state, status="running", tokens_used=0, step=called)
    with pytest.raises(NotFoundError):
        store.finish_agent_execution("nope", "failed", tokens_used=0, duration_ms=0)


def test_approval_is_decided_only_while_a_run_waits(store: Store) -> None:
    call = {"id": "c1", "name": "restart", "arguments": {"installation": "blog"}}
    approved = store.start_agent_execution("helper", "restart the blog", actor="alice")
    store.save_agent_state(
        approved, {"turns": 1}, status="waiting_approval", pending=call, tokens_used=5
    )
    waiting = store.agent_execution(approved)
    assert (waiting.status, waiting.pending) == ("waiting_approval", call)

    decided = store.decide_agent_execution(approved, True, "bob")
    assert (decided.status, decided.approval_by, decided.pending) == ("running", "bob", call)
    assert [(s.kind, s.detail) for s in decided.steps] == [
        ("approval", {"approved": True, "by": "bob", "call": call})
    ]
    with pytest.raises(StateError, match="not waiting for an approval"):
        store.decide_agent_execution(approved, False, "carol")  # answered already

    rejected = store.start_agent_execution("helper", "restart it", actor="alice")
    with pytest.raises(StateError, match="its status is running"):
        store.decide_agent_execution(rejected, True, "bob")  # never asked
    store.save_agent_state(
        rejected, {"turns": 1}, status="waiting_approval", pending=call, tokens_used=5
    )
    ended = store.decide_agent_execution(rejected, False, "bob")
    assert (ended.status, ended.reason) == ("rejected", "rejected by bob")
    assert ended.completed_at is not None
    with pytest.raises(NotFoundError):
        store.decide_agent_execution("nope", True, "bob")


def test_a_restart_interrupts_running_runs_and_leaves_waiting_ones(store: Store) -> None:
    running = store.start_agent_execution("helper", "a", actor="alice")
    waiting = store.start_agent_execution("helper", "b", actor="alice")
    store.save_agent_state(
        waiting, {"turns": 2}, status="waiting_approval", pending={"name": "apply"}, tokens_used=9
    )
    finished = store.start_agent_execution("helper", "c", actor="alice")
    store.finish_agent_execution(finished, "failed", reason="boom", tokens_used=1, duration_ms=1)

    assert store.interrupt_agent_executions("nebulad restarted") == [running]
    cut = store.agent_execution(running)
    assert (cut.status, cut.reason) == ("interrupted", "nebulad restarted")
    kept = store.agent_execution(waiting)
    assert (kept.status, kept.state, kept.pending) == (
        "waiting_approval",
        {"turns": 2},
        {"name": "apply"},
    )
    assert store.agent_execution(finished).status == "failed"
    assert store.interrupt_agent_executions("again") == []


def test_secrets_in_steps_state_and_calls_never_reach_the_database(
    store: Store, raw: sa.Engine
) -> None:
    run = store.start_agent_execution("helper", "look at the logs", actor="alice")
    store.record_agent_step(
        run,
        "tool_call",
        {
            "name": "logs",
            "arguments": {"installation": "blog", "api_token": "tok-4471-secret"},
            "result": "DB_PASSWORD=hunter2-4471",
        },
    )
    pending = {"name": "install", "arguments": {"variables": {"password": "pw-4471-secret"}}}
    store.save_agent_state(
        run,
        {"messages": [{"role": "tool", "content": "postgres://app:pg-4471-secret@db/app"}]},
        status="waiting_approval",
        pending=pending,
        tokens_used=1,
    )
    [step] = store.agent_execution(run).steps
    assert step.detail["arguments"] == {"installation": "blog", "api_token": "••••"}
    assert step.detail["result"] == "DB_PASSWORD=••••"
    with raw.connect() as conn:
        stored = " ".join(
            str(value)
            for table in ("agent_steps", "agent_executions")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            for value in row
        )
    assert "blog" in stored  # what is not secret is kept
    for secret in ("tok-4471-secret", "hunter2-4471", "pw-4471-secret", "pg-4471-secret"):
        assert secret not in stored
