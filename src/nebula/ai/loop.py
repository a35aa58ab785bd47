"""The agent loop: the model replies, the tools it calls run, their results go back, until it
answers, a guardrail stops it, a call waits for a person, or its time or turns are spent.

The loop is resumable: everything it needs is in `LoopState` (JSON-serialisable), which the
caller saves after each step. A call that needs approval ends a run with `waiting_approval`
and the call in `state.pending`; the caller records the decision as
`state.decision = {"approved": bool, "by": str}` and calls `run_loop` again with that state: an
approved call runs and the run goes on; a rejected one does not, and the run ends `rejected`.

Two ways to call tools (`AgentDef.tool_calling`): `native`, the API's own tool calls; `react`,
one JSON step per reply constrained by a schema (`react.py`), for models without them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import jsonschema

from nebula.ai import react
from nebula.ai.guardrails import Guardrails
from nebula.errors import NebulaError, ProviderError
from nebula.kinds.agents.types import AgentDef
from nebula.kinds.functions.types import FunctionDef
from nebula.providers.llm import ChatModel, Reply, ToolCall

RESULT_MAX = 8 * 1024  # bytes of a tool's result the model sees

Status = Literal["completed", "waiting_approval", "failed", "blocked", "timed_out", "rejected"]


@dataclass
class LoopState:
    """A run so far. `messages` are OpenAI-shaped (see `ChatModel`); `queue` holds the calls
    of the last reply not handled yet, `pending` the one waiting for a person and `decision`
    the person's answer (`{"approved": bool, "by": str}`) when the run resumes."""

    messages: list[dict[str, Any]]
    turns: int = 0
    tokens: int = 0
    pending: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    queue: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Event:
    """What happened, as it happens: `turn` (n), `delta` (text), `tool_call` (name, arguments),
    `tool_result` (name, ok, excerpt), `approval` (the pending call), `final` (output),
    `error` (status, reason)."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status: Status
    output: str | None
    reason: str | None
    state: LoopState


class _StopRunError(Exception):
    """Ends a run early with an outcome other than an answer."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def run_loop(
    agent: AgentDef,
    model: ChatModel,
    tools: Mapping[str, FunctionDef],
    state: LoopState,
    *,
    invoke: Callable[[FunctionDef, dict[str, Any]], str],
    needs_approval: Callable[[FunctionDef], bool],
    guard: Guardrails,
    deadline: float,
    emit: Callable[[Event], None],
    mask: Callable[[str], str],
) -> Outcome:
    """Run (or resume) `agent` on `state` until it ends or waits. `deadline` is a
    `time.monotonic()` instant. `invoke` runs a function (raising a NebulaError when it
    fails); `needs_approval` says whether a call waits for a person; `mask` takes secrets out
    of a tool's result before the model sees it."""
    run = _Run(agent, model, tools, state, invoke, needs_approval, guard, deadline, emit, mask)
    try:
        return run.run()
    except _StopRunError as stop:
        emit(Event("error", {"status": stop.status, "reason": stop.reason}))
        return Outcome(stop.status, None, stop.reason, state)


@dataclass
class _Run:
    agent: AgentDef
    model: ChatModel
    tools: Mapping[str, FunctionDef]
    state: LoopState
    invoke: Callable[[FunctionDef, dict[str, Any]], str]
    needs_approval: Callable[[FunctionDef], bool]
    guard: Guardrails
    deadline: float
    emit: Callable[[Event], None]
    mask: Callable[[str], str]

    def run(self) -> Outcome:
        state = self.state
        if state.turns == 0 and state.pending is None and not state.queue:
            for message in state.messages:
                if message["role"] == "user":
                    self._check(message["content"], "the input")
        if state.pending is not None:
            if state.decision is None:
                return Outcome("waiting_approval", None, "waiting for approval", state)
            self._decided(state.pending, state.decision)
        while True:
            while state.queue:
                call = state.queue.pop(0)
                if not self._call(call):
                    self.emit(Event("approval", {"call": call}))
                    return Outcome("waiting_approval", None, "waiting for approval", state)
            if state.turns >= self.agent.max_turns:
                raise _StopRunError("failed", f"no answer after {state.turns} turn(s)")
            answer = self._turn()
            if answer is not None:
                self.emit(Event("final", {"output": answer}))
                return Outcome("completed", answer, None, state)

    def _turn(self) -> str | None:
        """One model reply: the answer, or None when it called tools (now queued)."""
        state = self.state
        left = self._left()
        state.turns += 1
        self.emit(Event("turn", {"n": state.turns}))
        first = state.turns == 1 and self.agent.tool_choice == "required" and bool(self.tools)
        react_mode = self.agent.tool_calling == "react"
        try:
            reply = self.model.chat(
                self._messages(),
                tools=None if react_mode else _tool_specs(self.tools),
                tool_choice="required" if first else "auto",
                schema=react.step_schema(self.tools, final=not first) if react_mode else None,
                temperature=self.agent.temperature,
                max_tokens=self.agent.max_tokens,
                timeout=left,
                on_delta=lambda text: self.emit(Event("delta", {"text": text})),
            )
        except ProviderError as e:
            if time.monotonic() >= self.deadline:
                raise _StopRunError("timed_out", self._late()) from None
            raise _StopRunError("failed", str(e)) from None
        state.tokens += reply.prompt_tokens + reply.completion_tokens
        self._check(reply.content, "the model's reply")
        return self._react(reply) if react_mode else self._native(reply)

    def _native(self, reply: Reply) -> str | None:
        if not reply.tool_calls:
            self.state.messages.append({"role": "assistant", "content": reply.content})
            return reply.content
        calls = [_call_dict(c) for c in reply.tool_calls]
        self.state.messages.append(
            {"role": "assistant", "content": reply.content, "tool_calls": calls}
        )
        self.state.queue = calls
        return None

    def _react(self, reply: Reply) -> str | None:
        self.state.messages.append({"role": "assistant", "content": reply.content})
        step = react.parse_step(reply.content)
        if isinstance(step, str):
            cut = reply.finish == "length"
            self.state.messages.append(
                react.invalid("it was cut at the token limit" if cut else step)
            )
            return None
        action, arguments = step
        if action == react.FINAL:
            answer = arguments.get("answer") if isinstance(arguments, dict) else arguments
            return str(answer)
        self.state.queue = [_call_dict(ToolCall(f"step_{self.state.turns}", action, arguments))]
        return None

    def _call(self, call: dict[str, Any]) -> bool:
        """Handle one call: fed back as invalid, run, or (False) left waiting for a person."""
        name, arguments = call["name"], call["arguments"]
        self.emit(Event("tool_call", {"name": name, "arguments": arguments}))
        self._check(_json(arguments), f"the arguments of a call of {name}")
        fn = self.tools.get(name)
        problem = _invalid(fn, name, arguments, self.tools)
        if problem is not None:
            self._result(call, f"invalid arguments: {problem}. Nothing was run.", ok=False)
        elif fn is not None and self.needs_approval(fn):
            self.state.pending = call
            return False
        elif fn is not None:
            self._run(call, fn)
        return True

    def _decided(self, call: dict[str, Any], decision: Mapping[str, Any]) -> None:
        self.state.pending = self.state.decision = None
        if not decision.get("approved"):
            by = decision.get("by") or "a person"
            raise _StopRunError("rejected", f"rejected by {by}: {call['name']} was not run")
        self._run(call, self.tools[call["name"]])

    def _run(self, call: dict[str, Any], fn: FunctionDef) -> None:
        self._left()
        try:
            result, ok = self.invoke(fn, call["arguments"]), True
        except NebulaError as e:
            result, ok = f"error: {e}", False
        self._result(call, result, ok=ok)

    def _result(self, call: dict[str, Any], text: str, *, ok: bool) -> None:
        text = _cut(self.mask(text))
        self.emit(Event("tool_result", {"name": call["name"], "ok": ok, "excerpt": text[:200]}))
        if self.agent.tool_calling == "react":
            self.state.messages.append(react.observation(call["name"], text))
        else:
            self.state.messages.append(
                {"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": text}
            )

    def _messages(self) -> list[dict[str, Any]]:
        """What the model is sent: the state's messages, with the ReAct instructions added
        to the system prompt in that mode."""
        messages = self.state.messages
        if self.agent.tool_calling != "react":
            return messages
        addendum = react.instructions(self.tools)
        if messages and messages[0]["role"] == "system":
            system = {"role": "system", "content": f"{messages[0]['content']}\n\n{addendum}"}
            return [system, *messages[1:]]
        return [{"role": "system", "content": addendum}, *messages]

    def _check(self, text: str, where: str) -> None:
        reason = self.guard.violation(text, where)
        if reason is not None:
            raise _StopRunError("blocked", reason)

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _StopRunError("timed_out", self._late())
        return left

    def _late(self) -> str:
        limit = self.agent.max_execution_time
        return f"stopped at the time limit ({limit:g} s) after {self.state.turns} turn(s)"


def _tool_specs(tools: Mapping[str, FunctionDef]) -> list[dict[str, Any]] | None:
    return [
        {
            "type": "function",
            "function": {"name": n, "description": f.description, "parameters": f.parameters},
        }
        for n, f in tools.items()
    ] or None


def _invalid(
    fn: FunctionDef | None, name: str, arguments: Any, tools: Mapping[str, FunctionDef]
) -> str | None:
    """Why a call cannot run: an unknown tool, or arguments its schema refuses."""
    if fn is None:
        return f"no tool named {name!r} (tools: {', '.join(tools) or 'none'})"
    if not isinstance(arguments, dict):
        return "the arguments are not a JSON object"
    errors = sorted(jsonschema.Draft202012Validator(fn.parameters).iter_errors(arguments), key=str)
    if not errors:
        return None
    return "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors
    )


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _cut(text: str) -> str:
    data = text.encode()
    if len(data) <= RESULT_MAX:
        return text
    kept = data[:RESULT_MAX].decode(errors="ignore")
    return f"{kept}\n[cut: {len(data)} bytes in all, the first {RESULT_MAX} shown]"
