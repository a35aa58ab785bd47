"""Agents through nebulad's API and the CLI, on a real model: SmolLM2-135M served by llama.cpp
(the `local` OpenAI-compatible provider) and, through the official `ollama` client, by a server
speaking Ollama's protocol over it (`ollama_double.py`).

A real `Daemon`, started as nebulad starts it (following a config folder that is a git work
tree), behind the real API on a unix socket (the CLI) and loopback TCP (API keys, roles, the
audit log). No Docker Engine is needed: the agents' tools are built-ins that do not reach it
(`incidents`, `apply`). Tests assert what a user sees (statuses, steps, tokens, files
committed), never the model's wording.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_servers import MODEL, LlmServer, llm_server, ollama_server
from nebula.cli.client import parse_sse
from nebula.daemon.api import create_app
from nebula.daemon.config import DaemonConfig
from nebula.daemon.core import Daemon
from nebula.daemon.server import serve
from nebula.engine.load import load_desired
from nebula.identity import accounts
from nebula.identity.sessions import Sessions
from nebula.providers.docker import DockerProvider
from nebula.store import Store
from nebula.store import audit as audit_log
from ollama_double import ollama_double
from test_daemon_api import free_port, short_dir
from test_daemon_cli import run, run_json

__all__ = ["llm_server", "ollama_server"]  # the fixtures

PULLED = "tiny:1b"  # a model the Ollama server lacks until nebulad pulls it
NEBULA_YAML = """\
ai:
  ollama: {{host: "{ollama}"}}
  providers:
    local: {{base_url: "{llm}/v1"}}
    down: {{base_url: "http://127.0.0.1:{closed}/v1"}}
  timeout: 60s
"""
FUNCTIONS = {
    "incidents": "name: incidents\ndescription: Incidents, newest first\n"
    "implementation: incidents\nimplementation_type: code\n",
    "apply": "name: apply\ndescription: Run a sync now\n"
    "implementation: apply\nimplementation_type: code\n",
}


def agent(name: str, model: str, tools: list[str], **extra: str) -> str:
    lines = [
        f"name: {name}",
        f"description: The {name}",
        "systemPrompt: You look after a homelab. Use the tools, then answer in one sentence.",
        f"model: {model}",
        "temperature: 0",
        f"tools: [{', '.join(tools)}]",
        "context: {maxTokens: 48}",
        "maxTurns: 3",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


AGENTS = {
    "helper": agent("helper", f"ollama:{MODEL}", ["incidents"]),
    "fixer": agent("fixer", f"ollama:{MODEL}", ["apply"]),
    "chatty": agent("chatty", f"local:{MODEL}", []),
    "stranded": agent("stranded", f"down:{MODEL}", []),
    "puller": agent("puller", f"ollama:{PULLED}", []),
}

RUNBOOKS = {
    "diagnose": "name: diagnose\ntrigger: {type: manual}\nsteps:\n"
    "  - name: Ask\n    action: agent\n"
    "    params: {agent: helper, task: List the open incidents.}\n",
}


@dataclass
class Nebulad:
    daemon: Daemon
    store: Store
    repo: Path
    url: str
    keys: dict[str, str]  # scope -> API key

    def tcp(self, scope: str = "write") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=120)


def git(repo: Path, *args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env = {**os.environ, **identity, "GIT_COMMITTER_EMAIL": "t@x"}
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def homelab(
    tmp_path: Path, llm_server: LlmServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], Nebulad]]:
    """Starts nebulad (again, on the same store and folder, each call) and returns it once
    it has loaded the agents; the last one started is stopped at the end."""
    repo = tmp_path / "repo"
    for folder, files in (("functions", FUNCTIONS), ("agents", AGENTS), ("runbooks", RUNBOOKS)):
        (repo / folder).mkdir(parents=True)
        for name, text in files.items():
            (repo / folder / f"{name}.yaml").write_text(text)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    keys = {s: accounts.create_key(store, f"{s}-key", s)[1] for s in ("read", "write")}
    monkeypatch.delenv("NEBULA_DAEMON", raising=False)
    monkeypatch.delenv("NEBULA_TOKEN", raising=False)
    with (
        ollama_double(llm_server.url, {MODEL: MODEL}, {PULLED: MODEL}) as ollama,
        short_dir() as root,
    ):
        (repo / "nebula.yaml").write_text(
            NEBULA_YAML.format(ollama=ollama.url, llm=llm_server.url, closed=free_port())
        )
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "homelab")
        monkeypatch.setenv("NEBULA_SOCKET", str(root / "run" / "nebulad.sock"))
        with _NebuladRuns(repo, store, keys, root, tmp_path / "data") as runs:
            yield runs.start
    store.close()


class _NebuladRuns:
    """nebulad processes, one at a time, on the same store: started as `nebulad` starts."""

    def __init__(
        self, repo: Path, store: Store, keys: dict[str, str], root: Path, data: Path
    ) -> None:
        self.repo, self.store, self.keys, self.root = repo, store, keys, root
        self.config = DaemonConfig(source=str(repo), watch=True, data_dir=data)
        self.config.data_dir.mkdir(mode=0o700)
        self.stop: Callable[[], None] | None = None

    def __enter__(self) -> _NebuladRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop is not None:
            self.stop()

    def start(self) -> Nebulad:
        if self.stop is not None:
            self.stop()
        daemon = Daemon(self.config, self.store, DockerProvider("unix:///nonexistent.sock"), None)
        sessions = Sessions(self.store, bytes(range(32)))
        port = free_port()
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=serve,
            args=(
                create_app(daemon, token=None, tcp=False, audit=daemon.audit),
                self.root / "run" / "nebulad.sock",
            ),
            kwargs={
                "app_tcp": create_app(
                    daemon, token=None, tcp=True, sessions=sessions, audit=daemon.audit
                ),
                "tcp_listen": f"127.0.0.1:{port}",
                "stop": stop,
                "ready": ready,
            },
            daemon=True,
        )
        daemon.start()
        thread.start()
        assert ready.wait(10), "the API did not start"

        def stopping() -> None:
            stop.set()
            thread.join(15)
            daemon.stop(30)

        self.stop = stopping
        nebulad = Nebulad(daemon, self.store, self.repo, f"http://127.0.0.1:{port}", self.keys)
        with nebulad.tcp("read") as viewer:
            eventually(lambda: len(viewer.get("/agents").json()["agents"]) == len(AGENTS))
        return nebulad


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def stopped(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The execution once it no longer runs (ended, or waiting for approval)."""
    found: dict[str, Any] = {}

    def done() -> bool:
        nonlocal found
        found = client.get(f"/agents/executions/{execution_id}").json()
        return found["status"] != "running"

    eventually(done, 180)
    return found


def stream(client: httpx.Client, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """A streamed answer's events, as (kind, data), until the stream ends."""
    headers = {"Accept": "text/event-stream"}
    with client.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(i.kind, i.data) for i in parse_sse(response.iter_lines()) if i.kind]


def test_an_agent_run_streams_its_turns_and_tool_calls_and_is_recorded(
    homelab: Callable[[], Nebulad],
) -> None:
    nebulad = homelab()
    with nebulad.tcp() as ops:
        events = stream(ops, "/agents/helper/execute", {"task": "Are there open incidents?"})
        kinds = [k for k, _ in events]
        assert kinds[0] == "execution" and kinds[-1] == "end"
        assert {"turn", "delta", "tool_call", "tool_result", "final"} <= set(kinds)
        call = next(d for k, d in events if k == "tool_call")
        assert call["name"] == "incidents"
        end = events[-1][1]
        assert end["status"] == "completed" and end["output"]
        assert end["tokens_used"] > 0 and end["duration_ms"] > 0

        found = ops.get(f"/agents/executions/{end['id']}").json()
        assert (found["status"], found["agent_name"]) == ("completed", "helper")
        assert found["input"] == "Are there open incidents?"
        assert found["actor"].endswith(":write-key")
        steps = [s["kind"] for s in found["steps"]]
        assert steps.count("turn") >= 2 and steps.count("tool_call") == 1
        tool = next(s for s in found["steps"] if s["kind"] == "tool_call")
        assert (tool["detail"]["name"], tool["detail"]["ok"]) == ("incidents", True)
        assert sum(s["tokens"] for s in found["steps"]) == found["tokens_used"]

        history = ops.get("/agents/helper/history").json()["executions"]
        assert [e["id"] for e in history] == [end["id"]]
        assert ops.get("/ai/diagnostics").json()["agents"]["helper"]["statuses"] == {"completed": 1}
    actions = [(e.action, e.target) for e in audit_log.entries(nebulad.store)]
    assert ("agent.execute", "helper") in actions


def test_an_approval_pauses_a_run_survives_a_restart_and_approve_and_reject_both_work(
    homelab: Callable[[], Nebulad],
) -> None:
    nebulad = homelab()
    with nebulad.tcp() as ops, nebulad.tcp("read") as viewer:
        started = [ops.post("/agents/fixer/execute", json={"task": "Sync now."}) for _ in "ab"]
        assert [r.status_code for r in started] == [202, 202]
        first, second = (r.json()["id"] for r in started)
        for execution_id in (first, second):
            paused = stopped(ops, execution_id)
            assert paused["status"] == "waiting_approval"
            assert paused["pending"]["name"] == "apply"
        assert viewer.post(f"/agents/executions/{first}/approve").status_code == 403
        assert viewer.post("/agents/fixer/execute", json={"task": "x"}).status_code == 403
        already = nebulad.store.start_agent_execution("helper", "cut short", actor="test")

    nebulad = homelab()  # a restart: the pauses are kept, a run cut short is interrupted
    with nebulad.tcp() as ops:
        assert stopped(ops, already)["status"] == "interrupted"
        waiting = ops.get("/agents/executions", params={"status": "waiting_approval"}).json()
        assert {e["id"] for e in waiting["executions"]} == {first, second}
        approved = ops.post(f"/agents/executions/{first}/approve")
        assert approved.status_code == 200, approved.text
        done = stopped(ops, first)
        assert done["status"] in ("completed", "waiting_approval")  # it may ask again
        kinds = [s["kind"] for s in done["steps"]]
        assert kinds.index("approval") < len(kinds) - 1  # the run went on after it
        ran = [s for s in done["steps"] if s["kind"] == "tool_call"]
        assert ran[0]["detail"]["name"] == "apply" and ran[0]["detail"]["ok"]

        rejected = ops.post(f"/agents/executions/{second}/reject").json()
        assert rejected["status"] == "rejected"
        assert rejected["reason"].endswith(":write-key")
        assert not [s for s in rejected["steps"] if s["kind"] == "tool_call"]
        again = ops.post(f"/agents/executions/{second}/approve")
        assert again.status_code == 409
    actions = [e.action for e in audit_log.entries(nebulad.store)]
    assert {"agent.approve", "agent.reject"} <= set(actions)


def test_a_runbook_step_runs_an_agent_through_nebulad(homelab: Callable[[], Nebulad]) -> None:
    nebulad = homelab()
    nebulad.store.replace_runbooks([r.record for r in load_desired(nebulad.repo).runbooks])
    with nebulad.tcp() as ops:
        ran = ops.post("/runbooks/diagnose/run", json={})
        assert ran.status_code == 200, ran.text
        assert ran.json()["status"] == "succeeded", ran.json()
        execution = ops.get("/agents/helper/history").json()["executions"][0]
        assert (execution["status"], execution["actor"]) == ("completed", "runbook")
        steps = ops.get(f"/runbooks/executions/{ran.json()['execution']}").json()["step_states"]
        assert steps["ask"]["output"] == execution["output"]


def test_an_unreachable_provider_is_a_clear_error_and_status_shows_each_provider(
    homelab: Callable[[], Nebulad],
) -> None:
    nebulad = homelab()
    with nebulad.tcp() as ops:
        execution_id = ops.post("/agents/stranded/execute", json={"task": "hello"}).json()["id"]
        failed = stopped(ops, execution_id)
        assert failed["status"] == "failed"
        assert "127.0.0.1" in failed["reason"]

        status = ops.get("/ai/status").json()
        providers = {p["name"]: p for p in status["providers"]}
        assert set(providers) == {"ollama", "local", "down"}
        assert providers["local"]["reachable"] and MODEL in providers["local"]["models"]
        assert providers["ollama"]["reachable"] and MODEL in providers["ollama"]["models"]
        assert not providers["down"]["reachable"] and providers["down"]["error"]


def test_a_missing_ollama_model_is_pulled_with_progress(homelab: Callable[[], Nebulad]) -> None:
    nebulad = homelab()
    with nebulad.tcp("read") as viewer:
        eventually(
            lambda: (
                {"model": PULLED, "state": "present", "percent": None, "error": ""}
                in viewer.get("/ai/status").json()["models"]
            )
        )
        models = {m["model"]: m["state"] for m in viewer.get("/ai/status").json()["models"]}
        assert models == {MODEL: "present", PULLED: "present"}
        providers = {p["name"]: p for p in viewer.get("/ai/status").json()["providers"]}
        assert PULLED in providers["ollama"]["models"]
    database = f"sqlite:///{nebulad.repo.parent}/nebula.db"
    shown = run("status", "--database-url", database, "--docker-host", "unix:///nonexistent.sock")
    assert PULLED in shown and "present" in shown


def test_chat_streams_a_reply_from_the_model(homelab: Callable[[], Nebulad]) -> None:
    nebulad = homelab()
    say_hi = [{"role": "user", "content": "Say hi."}]
    body = {"model": f"local:{MODEL}", "messages": say_hi, "max_tokens": 24}
    with nebulad.tcp() as ops:
        events = stream(ops, "/ai/chat", {**body, "stream": True})
        assert events[-1][0] == "done" and events[-1][1]["completion_tokens"] > 0
        deltas = "".join(d["text"] for k, d in events if k == "delta")
        assert deltas == events[-1][1]["content"]
        assert events[-1][1]["completion_tokens"] <= 24
        too_long = ops.post("/ai/chat", json={**body, "max_tokens": 0})
        assert too_long.status_code == 400 and "max_tokens" in too_long.json()["error"]
        plain = ops.post("/ai/chat", json={**body, "model": f"down:{MODEL}"})
        assert plain.status_code == 502 and "127.0.0.1" in plain.json()["error"]


def test_create_and_update_commit_the_agent_to_the_config_repo(
    homelab: Callable[[], Nebulad],
) -> None:
    nebulad = homelab()
    body = {
        "name": "scout",
        "description": "Looks around",
        "systemPrompt": "You look around.",
        "model": f"ollama:{MODEL}",
        "tools": ["incidents"],
    }
    with nebulad.tcp() as ops, nebulad.tcp("read") as viewer:
        assert viewer.post("/agents", json=body).status_code == 403
        created = ops.post("/agents", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["files"] == ["agents/scout.yaml"]
        assert git(nebulad.repo, "log", "-1", "--format=%H").strip() == created.json()["commit"]
        assert ops.post("/agents", json=body).status_code == 409

        wrong = ops.put("/agents/scout", json={**body, "tools": ["incidentz"]})
        assert wrong.status_code == 422
        problem = wrong.json()["problems"][0]
        assert problem["file"] == "agents/scout.yaml" and problem["line"] > 1
        assert "incidents" in problem["message"]  # did you mean

        updated = ops.put("/agents/scout", json={**body, "description": "Looks closer"})
        assert updated.status_code == 200, updated.text
        assert "Looks closer" in (nebulad.repo / "agents" / "scout.yaml").read_text()
        assert ops.put("/agents/nobody", json={**body, "name": "nobody"}).status_code == 404
        eventually(lambda: viewer.get("/agents/scout").status_code == 200)
    actions = [e.action for e in audit_log.entries(nebulad.store)]
    assert {"agent.create", "agent.update", "repo.commit"} <= set(actions)


def test_the_cli_runs_lists_and_approves_agents_and_invokes_functions(
    homelab: Callable[[], Nebulad],
) -> None:
    homelab()
    listed = run_json("agents", "list")
    assert isinstance(listed, list) and {a["name"] for a in listed} == set(AGENTS)
    assert "incidents" in run("agents", "show", "helper")

    shown = run("agents", "run", "helper", "Any open incidents?")
    assert "→ incidents(" in shown and "completed" in shown and "tokens" in shown
    ended = run_json("agents", "run", "helper", "Any open incidents?")
    assert isinstance(ended, dict) and ended["status"] == "completed"
    assert ended["tokens_used"] > 0 and [s for s in ended["steps"] if s["kind"] == "tool_call"]

    paused = run("agents", "run", "fixer", "Sync now.", "--no-stream")
    assert "waiting_approval" in paused and "nebula agents approve" in paused
    execution_id = paused.split("nebula agents approve ")[1].split("`")[0]
    assert "Rejected" in run("agents", "reject", execution_id)
    assert "rejected" in run("agents", "history", "fixer")
    refused = run("agents", "approve", execution_id, code=1)
    assert "not waiting for an approval" in refused

    invoked = run_json("functions", "invoke", "incidents", "--arg", "status=open")
    assert isinstance(invoked, dict) and invoked["ok"]
    assert json.loads(invoked["result"])["status"] == "open"
    bad = run("functions", "invoke", "incidents", "--arg", "status=closed", code=1)
    assert "status" in bad
    assert "reachable" in run("ai", "status")

    failed = run("agents", "run", "stranded", "hello", code=1)
    assert "failed" in failed and "127.0.0.1" in failed
