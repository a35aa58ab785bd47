"""The agent loop against a real model (SmolLM2-135M on llama.cpp), through the official
`openai` client (ReAct steps as structured output) and the official `ollama` client (native
tool calls, and ReAct through `format`) via the server speaking Ollama's protocol. What reached
the model is checked at that server (`OllamaDouble.chats`). Assertions are on structure: the
model's wording varies."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from llm_servers import LlmServer
from nebula.ai.guardrails import Guardrails
from nebula.ai.loop import Event, LoopState, Outcome, run_loop
from nebula.kinds.agents.types import AgentDef
from nebula.kinds.functions.types import FunctionDef
from nebula.providers.llm import ChatModel, Endpoint, open_model
from nebula.store.mask import mask_detail
from ollama_double import OllamaDouble

pytestmark = pytest.mark.timeout(180)

STATUS = FunctionDef(
    name="status",
    description="The status of one installation",
    parameters={
        "type": "object",
        "properties": {"installation": {"type": "string", "enum": ["web", "db"]}},
        "required": ["installation"],
        "additionalProperties": False,
    },
    implementation="status",
    implementation_type="http",
)
AGENT = AgentDef(
    name="ops",
    description="Ops assistant",
    system_prompt="You are a homelab's ops assistant. Use the tools, then answer briefly.",
    model="ollama:smollm2:135m",
    temperature=0,
    tools=("status",),
    max_tokens=200,
    max_turns=4,
)
TASK = "Is the web installation up?"
SECRET = "hunter2-Zq81-vault-value"


@dataclass
class Run:
    """A run's outcome, its events and the calls its tools received."""

    outcome: Outcome
    events: list[Event]
    invoked: list[dict[str, Any]] = field(default_factory=list)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind == kind]


def model_for(
    agent: AgentDef, llm: LlmServer, ollama: OllamaDouble, timeout: float = 60
) -> ChatModel:
    endpoints = {
        "local": Endpoint("local", "openai", llm.openai_url),
        "ollama": Endpoint("ollama", "ollama", ollama.url),
    }
    return open_model(agent.model, endpoints, timeout)


def start(agent: AgentDef, task: str = TASK) -> LoopState:
    return LoopState(
        [{"role": "system", "content": agent.system_prompt}, {"role": "user", "content": task}]
    )


def run(
    agent: AgentDef,
    model: ChatModel,
    state: LoopState,
    *,
    result: Callable[[dict[str, Any]], str] = lambda args: f"{args['installation']}: healthy",
    approval: bool = False,
    seconds: float = 120,
    tools: dict[str, FunctionDef] | None = None,
    invoked: list[dict[str, Any]] | None = None,
) -> Run:
    done = Run(outcome=None, events=[], invoked=invoked if invoked is not None else [])  # type: ignore[arg-type]

    def invoke(fn: FunctionDef, arguments: dict[str, Any]) -> str:
        done.invoked.append(arguments)
        return result(arguments)

    done.outcome = run_loop(
        agent,
        model,
        tools if tools is not None else {"status": STATUS},
        state,
        invoke=invoke,
        needs_approval=lambda fn: approval,
        guard=Guardrails.of(agent),
        deadline=time.monotonic() + seconds,
        emit=done.events.append,
        mask=lambda text: mask_detail(text, {SECRET: "4f2a9c"}),
    )
    return done


def assert_real_tool_call(done: Run) -> None:
    assert done.outcome.status == "completed", done.outcome.reason
    assert done.invoked and all(a["installation"] in ("web", "db") for a in done.invoked)
    assert done.outcome.output
    assert done.outcome.state.tokens > 0
    assert done.kinds("delta")  # streamed
    assert done.kinds("tool_result")[0]["ok"]
    order = [e.kind for e in done.events]
    assert order[0] == "turn" and order[-1] == "final"
    assert order.index("tool_call") < order.index("tool_result")


def test_openai_client_react_run_with_a_real_tool_call(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    agent = replace(AGENT, model="local:smollm2:135m", tool_calling="react", tool_choice="required")
    done = run(agent, model_for(agent, llm_server, ollama_server), start(agent))
    assert_real_tool_call(done)


def test_ollama_client_native_run_with_a_real_tool_call(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    done = run(AGENT, model_for(AGENT, llm_server, ollama_server), start(AGENT))
    assert_real_tool_call(done)
    messages = done.outcome.state.messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert ollama_server.chats[-1]["messages"][3]["tool_name"] == "status"


def test_ollama_client_react_run_through_format(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    agent = replace(AGENT, tool_calling="react", tool_choice="required")
    done = run(agent, model_for(agent, llm_server, ollama_server), start(agent))
    assert_real_tool_call(done)
    assert ollama_server.chats[-1]["format"] and not ollama_server.chats[-1].get("tools")


def test_blocked_input_stops_before_the_model_is_asked(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    agent = replace(AGENT, blocked_patterns=(r"drop\s+table",))
    before = len(ollama_server.chats)
    done = run(
        agent, model_for(agent, llm_server, ollama_server), start(agent, "DROP  TABLE users")
    )
    assert done.outcome.status == "blocked"
    assert done.outcome.reason == r"blocked pattern 'drop\\s+table' found in the input"
    assert len(ollama_server.chats) == before and not done.invoked


def test_blocked_model_output_stops_the_run(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    # every ReAct step the model writes has an "action" key
    agent = replace(AGENT, tool_calling="react", blocked_patterns=('"action"',))
    done = run(agent, model_for(agent, llm_server, ollama_server), start(agent))
    assert done.outcome.status == "blocked"
    assert done.outcome.reason == "blocked pattern '\"action\"' found in the model's reply"
    assert not done.invoked and done.kinds("error")[-1]["status"] == "blocked"


def test_blocked_tool_arguments_are_never_run(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    agent = replace(AGENT, blocked_patterns=('"(web|db)"',))  # whichever it picks
    done = run(agent, model_for(agent, llm_server, ollama_server), start(agent))
    assert done.outcome.status == "blocked"
    assert (
        done.outcome.reason
        == "blocked pattern '\"(web|db)\"' found in the arguments of a call of status"
    )
    assert done.kinds("tool_call") and not done.invoked


def test_arguments_the_schema_refuses_are_fed_back_not_run(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    # The model is held to the enum; the schema also wants 5 characters, which no enum value
    # has (llama.cpp's grammar keeps the enum and drops minLength): every call is invalid.
    strict = replace(
        STATUS,
        parameters={
            "type": "object",
            "properties": {"installation": {"enum": ["web", "db"], "minLength": 5}},
            "required": ["installation"],
        },
    )
    agent = replace(AGENT, max_turns=2)
    done = run(
        agent, model_for(agent, llm_server, ollama_server), start(agent), tools={"status": strict}
    )
    assert not done.invoked
    [result, *_] = done.kinds("tool_result")
    assert not result["ok"] and result["excerpt"].startswith("invalid arguments: installation:")
    sent = ollama_server.chats[-1]["messages"]
    assert sent[3]["role"] == "tool" and "Nothing was run" in sent[3]["content"]


def test_a_wrong_typed_call_in_the_state_is_fed_back_not_run(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    bad = {"id": "call_7", "name": "status", "arguments": {"installation": 5}}
    state = start(AGENT)
    state.messages.append({"role": "assistant", "content": "", "tool_calls": [bad]})
    state.queue = [bad]
    state.turns = 1
    done = run(AGENT, model_for(AGENT, llm_server, ollama_server), state)
    assert {"installation": 5} not in done.invoked
    tool = state.messages[3]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_7"
    assert tool["content"].startswith("invalid arguments: installation: 5 is not")
    assert "5 is not one of ['web', 'db']" in tool["content"]
    assert done.outcome.state.turns >= 2  # the model was asked again, with the error


def test_a_looping_agent_hits_the_turn_limit(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    agent = replace(AGENT, tool_calling="react", tool_choice="required", max_turns=1)
    done = run(agent, model_for(agent, llm_server, ollama_server), start(agent))
    assert done.outcome.status == "failed"
    assert done.outcome.reason == "no answer after 1 turn(s)"
    assert len(done.invoked) == 1


def test_a_run_past_its_time_limit_stops(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    agent = replace(AGENT, max_turns=50, max_execution_time=2)

    def slow(arguments: dict[str, Any]) -> str:
        time.sleep(2.5)  # the tool outlasts the run's time
        return "healthy"

    done = run(
        agent, model_for(agent, llm_server, ollama_server), start(agent), result=slow, seconds=2
    )
    assert done.outcome.status == "timed_out"
    assert done.outcome.reason == "stopped at the time limit (2 s) after 1 turn(s)"


@pytest.mark.parametrize("provider", ["local", "ollama"])
def test_a_model_call_is_cut_off_at_the_deadline(
    llm_server: LlmServer, ollama_server: OllamaDouble, provider: str
) -> None:
    agent = replace(
        AGENT, model=f"{provider}:smollm2:135m", tools=(), max_tokens=4000, max_execution_time=3
    )
    story = "Write a very long story about a lighthouse keeper, in many chapters."
    done = run(
        agent,
        model_for(agent, llm_server, ollama_server),
        start(agent, story),
        tools={},
        seconds=3,
    )
    assert done.outcome.status == "timed_out"
    assert done.outcome.reason == "stopped at the time limit (3 s) after 1 turn(s)"
    assert done.kinds("delta")  # it was answering when the time ran out


def test_an_unreachable_provider_fails_the_run_clearly(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    model = open_model("ollama:smollm2:135m", {"ollama": Endpoint("ollama", "ollama", url)}, 30)
    done = run(AGENT, model, start(AGENT))
    assert done.outcome.status == "failed"
    assert (
        done.outcome.reason
        == f"model ollama:smollm2:135m at {url}: unreachable: [Errno 111] Connection refused"
    )


def test_a_secret_in_a_tool_result_never_reaches_the_model(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    first = len(ollama_server.chats)
    done = run(
        AGENT,
        model_for(AGENT, llm_server, ollama_server),
        start(AGENT),
        result=lambda args: f"{args['installation']}: healthy, DB_PASSWORD={SECRET} in its env",
    )
    assert done.invoked
    received = json.dumps(ollama_server.chats[first:], ensure_ascii=False)
    assert SECRET not in received
    assert "DB_PASSWORD=••••4f2a9c in its env" in received


def test_a_large_tool_result_is_cut(llm_server: LlmServer, ollama_server: OllamaDouble) -> None:
    first = len(ollama_server.chats)
    agent = replace(AGENT, max_turns=1)
    done = run(
        agent,
        model_for(agent, llm_server, ollama_server),
        start(agent),
        result=lambda a: "x" * 50_000,
    )
    assert done.invoked
    tool = done.outcome.state.messages[3]["content"]
    assert len(tool.encode()) < 9 * 1024 and tool.endswith(
        "[cut: 50000 bytes in all, the first 8192 shown]"
    )
    assert len(ollama_server.chats) == first + 1  # the turn limit: the cut result was not sent


@pytest.mark.parametrize("approved", [True, False])
def test_an_approval_pauses_and_resumes_from_the_saved_state(
    llm_server: LlmServer, ollama_server: OllamaDouble, approved: bool
) -> None:
    model = model_for(AGENT, llm_server, ollama_server)
    invoked: list[dict[str, Any]] = []
    paused = run(AGENT, model, start(AGENT), approval=True, invoked=invoked)
    assert paused.outcome.status == "waiting_approval" and not invoked
    pending = paused.outcome.state.pending
    assert pending is not None and pending["name"] == "status"
    assert paused.kinds("approval") == [{"call": pending}]
    # saved as JSON (the store), loaded again later, the person's decision recorded
    saved = json.loads(json.dumps(paused.outcome.state.to_dict()))
    state = LoopState.from_dict(saved)
    assert run(AGENT, model, state, approval=True).outcome.status == "waiting_approval"
    state.decision = {"approved": approved, "by": "alice"}
    first = len(ollama_server.chats)
    done = run(AGENT, model, state, approval=True, invoked=invoked)
    assert done.outcome.state.pending is None
    if approved:
        assert done.outcome.status == "completed"
        assert invoked == [pending["arguments"]]
        tool = ollama_server.chats[first]["messages"][3]
        assert tool["content"] == f"{pending['arguments']['installation']}: healthy"
    else:  # nothing runs, and the model is not asked again
        assert (done.outcome.status, done.outcome.reason) == (
            "rejected",
            "rejected by alice: status was not run",
        )
        assert invoked == [] and len(ollama_server.chats) == first
