"""The AI runtime as nebulad runs it and its API offers it: agents' executions, approvals,
functions invoked by hand, chat with a model, the providers' state.

`AI` holds the agents, functions and `ai:` config of the last good commit (`configure`) and
keeps the Ollama models the agents need (`pulls.ModelPulls`). An execution runs its loop
(`ai.loop`) in a worker thread; each turn and tool call is recorded as a step of the
execution and its state saved after it, so a paused execution (a tool call waiting for a
person) survives a restart and goes on in a new worker when approved. `maxExecutionTime`
counts the time spent running, not the time waiting for approval. What a tool returns passes
through the same masking as logs and audit details (every vault secret's value and its
encodings) before the model sees it, or the store records it.

Events go on nebulad's bus as `agent` (id, agent, status; and each turn, tool call, tool
result and approval as `event`, without the model's text deltas) and to the caller's `emit`
(everything, deltas included: what the API streams).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from statistics import mean
from typing import TYPE_CHECKING, Any

from nebula.ai.builtins import BuiltinFunction
from nebula.ai.functions import FunctionContext, FunctionError, invoke_function
from nebula.ai.guardrails import Guardrails
from nebula.ai.loop import Event, LoopState, Outcome, run_loop
from nebula.ai.pulls import ModelPulls
from nebula.errors import NebulaError, NotFoundError, RequestError
from nebula.kinds.agents.types import AgentDef
from nebula.kinds.functions.types import FunctionDef
from nebula.providers.llm import ChatModel, Endpoint, Models, provider_status
from nebula.secrets.masking import VaultMasker
from nebula.spec.config import AiConfig, OpenAICompatible
from nebula.store.records import NewAgentStep

if TYPE_CHECKING:
    from nebula.kinds.base import Desired
    from nebula.providers.docker import DockerProvider
    from nebula.store import Store
    from nebula.store.records import AgentExecutionInfo

log = logging.getLogger("nebulad.ai")

HISTORY_RUNS = 5  # completed runs `includeHistory` puts before the task
_ENDED = frozenset({"completed", "failed", "blocked", "timed_out", "rejected", "interrupted"})
_FAILED = frozenset({"failed", "blocked", "timed_out", "rejected", "interrupted"})
_LAST = frozenset({"final", "approval", "error"})  # the loop's events that end a run
Emit = Callable[[str, dict[str, Any]], None]  # (kind, data): a caller's view of one execution


class AIError(RequestError):
    """A request the AI runtime cannot answer."""


@dataclass
class _Run:
    """One execution while a worker drives it."""

    id: str
    agent: AgentDef
    emit: Emit | None
    elapsed: float = 0.0  # seconds run before this worker (earlier workers, before a pause)
    started: float = field(default_factory=time.monotonic)
    turn: tuple[int, float, int] | None = None  # the turn waiting for its reply: n, began, tokens
    call: tuple[dict[str, Any], float] | None = None  # the tool call running, and since when
    last: NewAgentStep | None = None  # the turn that ended the run: recorded with its end

    def spent(self) -> float:
        return self.elapsed + time.monotonic() - self.started


@dataclass
class Ran:
    """An execution that ended or paused, as a runbook's `agent` step sees it."""

    execution_id: str
    status: str
    output: str | None
    reason: str | None


class AI:
    def __init__(
        self,
        store: Store,
        publish: Callable[..., None],
        builtins: Mapping[str, BuiltinFunction],
        docker: Callable[[], DockerProvider],
    ) -> None:
        """`publish(kind, **data)` puts an event on nebulad's bus; `builtins` are the built-in
        functions (`ai.builtins.Builtins`, with nebulad's own); `docker` opens the Docker
        Engine `docker` functions run on."""
        self.store = store
        self.publish = publish
        self.builtins = builtins
        self.docker = docker
        self.pulls = ModelPulls(store, publish)
        self._agents: dict[str, AgentDef] = {}
        self._functions: dict[str, FunctionDef] = {}
        self._config = AiConfig()
        self._secret: Callable[[str], str] = _no_secrets
        self._workers: set[threading.Thread] = set()
        # Kept between executions, each with what it was made from: the models (one client
        # per endpoint) with the configuration's generation and the vault's fingerprints (the
        # API keys), the masker with the fingerprints. Rebuilt when those change.
        self._generation = 0
        self._models: tuple[tuple[int, Mapping[str, str]], Models] | None = None
        self.masking = VaultMasker(store)

    # -- configuration ---------------------------------------------------------------------

    def configure(self, desired: Desired, secret: Callable[[str], str]) -> None:
        """The agents, functions and `ai:` config of a good commit; the Ollama models its
        agents use are checked, and pulled when missing, in the background."""
        self._agents = {a.name: a.spec for a in desired.agents}
        self._functions = {f.name: f.spec for f in desired.functions}
        self._config = config = desired.repo.config.ai
        self._secret = secret
        self._generation += 1
        self.pulls.reconcile(
            (a.model_name for a in self._agents.values() if a.provider == "ollama"),
            Endpoint("ollama", "ollama", config.ollama.host),
            pull=config.ollama.pull,
        )

    def endpoints(self) -> dict[str, Endpoint]:
        """The model servers: `ollama` and `openai` when nebula.yaml's `ai:` names them or an
        agent uses them, and every server of `ai.providers`; API keys revealed from the vault
        (a `NebulaError` says which secret is missing)."""
        config = self._config
        used = {a.provider for a in self._agents.values()}
        found = {}
        if "ollama" in used or "ollama" in config.model_fields_set:
            found["ollama"] = Endpoint("ollama", "ollama", config.ollama.host)
        servers: dict[str, OpenAICompatible] = dict(config.providers)
        if "openai" in used or "openai" in config.model_fields_set:
            servers = {"openai": config.openai, **servers}
        for name, server in servers.items():
            key = server.api_key_secret
            found[name] = Endpoint(
                name, "openai", server.base_url, self._secret(key) if key else None
            )
        return found

    def _model(self, model: str, fingerprints: Mapping[str, str]) -> ChatModel:
        """`model` on its endpoint, whose client is reused while neither the configuration nor
        the vault (`fingerprints`: an API key) changed."""
        made_of = (self._generation, fingerprints)
        kept = self._models
        if kept is None or kept[0] != made_of:
            kept = self._models = (made_of, Models(self.endpoints(), self._config.timeout))
        return kept[1].open(model)

    def agents(self) -> list[dict[str, Any]]:
        """The agents of the last good commit, each with its latest execution."""
        listed = []
        for agent in sorted(self._agents.values(), key=lambda a: a.name):
            last = self.store.agent_executions(agent=agent.name, limit=1)
            latest = (
                {"id": last[0].id, "status": last[0].status, "created_at": last[0].created_at}
                if last
                else None
            )
            listed.append({**asdict(agent), "last_execution": latest})
        return listed

    def describe_agent(self, name: str) -> dict[str, Any]:
        """An agent, with its five latest executions."""
        agent = self.agent(name)
        return {**asdict(agent), "executions": self.history(name, 5)}

    def functions(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in sorted(self._functions.values(), key=lambda f: f.name)]

    def describe_function(self, name: str) -> dict[str, Any]:
        fn = self.function(name)
        users = sorted(a.name for a in self._agents.values() if name in a.tools)
        return {**asdict(fn), "writes": fn.writes, "agents": users}

    def agent(self, name: str) -> AgentDef:
        found = self._agents.get(name)
        if found is None:
            known = ", ".join(sorted(self._agents)) or "none yet"
            raise AIError("not_found", f"no agent {name!r} in the last synced commit ({known})")
        return found

    def function(self, name: str) -> FunctionDef:
        found = self._functions.get(name)
        if found is None:
            known = ", ".join(sorted(self._functions)) or "none yet"
            raise AIError("not_found", f"no function {name!r} in the last synced commit ({known})")
        return found

    # -- executions ------------------------------------------------------------------------

    def execute(
        self,
        agent: str,
        task: str,
        actor: str,
        incident: str | None = None,
        emit: Emit | None = None,
    ) -> str:
        """Start an execution of `agent` on `task` in a worker; its id. `emit` gets every event
        of it (deltas included), then `end` when it stops (ended or paused)."""
        found = self.agent(agent)
        if not task.strip():
            raise AIError("invalid", 'give the agent a task: {"task": "..."}')
        execution_id = self.store.start_agent_execution(
            found.name, task, actor=actor, incident_id=incident
        )
        state = LoopState(messages=self._opening(found, task))
        run = _Run(execution_id, found, emit)
        self._send(run, "execution", {"id": execution_id, "agent": found.name, "actor": actor})
        self.publish("agent", id=execution_id, agent=found.name, status="running")
        self._spawn(run, state)
        return execution_id

    def run(self, agent: str, task: str, actor: str, incident: str | None = None) -> Ran:
        """An execution to its end, or to its first pause (a runbook's `agent` step)."""
        stopped = threading.Event()
        ended: dict[str, Any] = {}  # the `end` event's data: the execution as recorded

        def emit(kind: str, data: dict[str, Any]) -> None:
            if kind == "end":
                ended.update(data)
                stopped.set()

        execution_id = self.execute(agent, task, actor, incident, emit)
        stopped.wait()
        return Ran(execution_id, ended["status"], ended["output"], ended["reason"])

    def decide(self, execution_id: str, approved: bool, by: str) -> AgentExecutionInfo:
        """A person's answer to the tool call an execution waits on: approved, it runs and the
        execution goes on in a worker; rejected, the execution ends `rejected`."""
        waiting = self.execution(execution_id)
        if approved:
            agent = self.agent(waiting.agent_name)  # before deciding: it may be gone
        decided = self.store.decide_agent_execution(execution_id, approved, by)
        self.publish("agent", id=execution_id, agent=waiting.agent_name, status=decided.status)
        if approved:
            state = LoopState.from_dict(waiting.state)
            state.decision = {"approved": True, "by": by}
            elapsed = float(waiting.state.get("elapsed", 0.0))
            run = _Run(execution_id, agent, None, elapsed=elapsed)
            run.call = (dict(waiting.pending or {}), time.monotonic())  # it runs first
            self._spawn(run, state)
        return decided

    def resume_interrupted(self) -> list[str]:
        """At start: executions cut short by the last stop end `interrupted` (a model's reply
        cannot be taken up halfway); those waiting for approval keep waiting."""
        ended = self.store.interrupt_agent_executions(
            "interrupted: nebulad stopped during this execution; run it again"
        )
        for execution_id in ended:
            self.publish("agent", id=execution_id, status="interrupted")
        return ended

    def execution(self, execution_id: str) -> AgentExecutionInfo:
        try:
            return self.store.agent_execution(execution_id)
        except NotFoundError:
            raise AIError("not_found", f"no agent execution {execution_id}") from None

    def history(self, agent: str, limit: int = 50) -> list[AgentExecutionInfo]:
        return self.store.agent_executions(agent=agent, limit=limit)

    def executions(self, status: str | None, limit: int = 50) -> list[AgentExecutionInfo]:
        """Every agent's latest executions (in `status`, if given: `waiting_approval`, the
        ones a person must answer), newest first."""
        return self.store.agent_executions(limit=limit, status=status)

    def _opening(self, agent: AgentDef, task: str) -> list[dict[str, Any]]:
        """The system prompt, the agent's last completed runs (`includeHistory`), the task."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": agent.system_prompt}]
        if agent.include_history:
            done = [
                e for e in self.store.agent_executions(agent=agent.name) if e.status == "completed"
            ][:HISTORY_RUNS]
            for past in reversed(done):
                messages.append({"role": "user", "content": past.input})
                messages.append({"role": "assistant", "content": past.output or ""})
        messages.append({"role": "user", "content": task})
        return messages

    def _spawn(self, run: _Run, state: LoopState) -> None:
        thread = threading.Thread(
            target=self._drive, args=(run, state), name=f"agent {run.id[:8]}", daemon=True
        )
        self._workers.add(thread)
        thread.start()

    def _drive(self, run: _Run, state: LoopState) -> None:
        """Run the loop until the execution ends or pauses; record how."""
        try:
            outcome = self._loop(run, state)
        except Exception as exc:  # a bug or the store failing: the execution still ends
            log.exception("agent execution %s failed", run.id)
            outcome = Outcome("failed", None, f"internal error: {exc}", state)
        finally:
            self._workers.discard(threading.current_thread())
        try:
            self._record_end(run, outcome)
        except NebulaError:
            log.exception("could not record the end of agent execution %s", run.id)
        self._send(run, "end", {"id": run.id, **self._summary(run.id)})

    def _loop(self, run: _Run, state: LoopState) -> Outcome:
        agent = run.agent
        try:
            fingerprints = self.masking.fingerprints()
            model = self._model(agent.model, fingerprints)
        except NebulaError as exc:
            return Outcome("failed", None, str(exc), state)
        try:
            mask = self.masking.masker(fingerprints)
        except NebulaError as exc:
            why = f"the vault's secrets cannot be read to mask what tools return: {exc}"
            return Outcome("failed", None, why, state)
        tools = {name: self.function(name) for name in agent.tools}
        context = self._context(mask)

        def invoke(fn: FunctionDef, arguments: dict[str, Any]) -> str:
            return invoke_function(fn, arguments, context)

        def emit(event: Event) -> None:
            self._on_event(run, state, event)

        return run_loop(
            agent,
            model,
            tools,
            state,
            invoke=invoke,
            needs_approval=lambda fn: needs_approval(agent, fn),
            guard=Guardrails.of(agent),
            deadline=time.monotonic() + agent.max_execution_time - run.elapsed,
            emit=emit,
            mask=mask,
        )

    def _on_event(self, run: _Run, state: LoopState, event: Event) -> None:
        """Pass an event on; a model reply that ended and a tool call that returned are
        recorded as steps, each with the state after it (the reply that ends the run, with
        the run's end)."""
        kind, data = event.kind, dict(event.data)
        self._send(run, kind, data)
        if kind == "delta":
            return
        now = time.monotonic()
        if run.turn is not None and kind != "turn":  # the reply of the turn is in
            n, began, tokens = run.turn
            run.turn = None
            reply = state.messages[-1] if state.messages else {}
            detail = {
                "n": n,
                "reply": str(reply.get("content") or "")[:500],
                "calls": [c["name"] for c in reply.get("tool_calls") or []],
            }
            step = NewAgentStep("turn", detail, state.tokens - tokens, int((now - began) * 1000))
            if kind in _LAST:  # the run ends now: one write with its end (`_record_end`)
                run.last = step
            else:
                self._step(run, state, step)
        if kind == "turn":
            run.turn = (int(data.get("n", state.turns)), now, state.tokens)
        elif kind == "tool_call":
            run.call = (data, now)
        elif kind == "tool_result" and run.call is not None:
            call, began = run.call
            run.call = None
            detail = {**data, "arguments": call.get("arguments")}
            self._step(run, state, NewAgentStep("tool_call", detail, 0, int((now - began) * 1000)))
        self.publish("agent", id=run.id, agent=run.agent.name, event=kind, **_brief(data))

    def _step(self, run: _Run, state: LoopState, step: NewAgentStep) -> None:
        self.store.save_agent_state(
            run.id, self._saved(run, state), status="running", tokens_used=state.tokens, step=step
        )

    def _record_end(self, run: _Run, outcome: Outcome) -> None:
        state = outcome.state
        if outcome.status == "waiting_approval":
            self.store.save_agent_state(
                run.id,
                self._saved(run, state),
                status="waiting_approval",
                pending=state.pending,
                tokens_used=state.tokens,
                step=run.last,
            )
        else:
            self.store.finish_agent_execution(
                run.id,
                outcome.status,
                output=outcome.output,
                reason=outcome.reason,
                tokens_used=state.tokens,
                duration_ms=int(run.spent() * 1000),
                step=run.last,
            )
        if outcome.status in _FAILED:
            log.warning("agent %s execution %s: %s", run.agent.name, run.id, outcome.reason)
        self.publish("agent", id=run.id, agent=run.agent.name, status=outcome.status)

    @staticmethod
    def _saved(run: _Run, state: LoopState) -> dict[str, Any]:
        """The loop's state, and the time run so far (an approval's wait not counted)."""
        return {**state.to_dict(), "elapsed": run.spent()}

    def _summary(self, execution_id: str) -> dict[str, Any]:
        found = self.store.agent_execution(execution_id)
        return {
            "status": found.status,
            "output": found.output,
            "reason": found.reason,
            "tokens_used": found.tokens_used,
            "duration_ms": found.duration_ms,
            "pending": found.pending,
        }

    @staticmethod
    def _send(run: _Run, kind: str, data: dict[str, Any]) -> None:
        if run.emit is not None:
            try:
                run.emit(kind, data)
            except Exception:  # a listener gone (a closed stream) never stops the run
                log.debug("an execution's listener failed", exc_info=True)

    def _context(self, mask: Callable[[str], str]) -> FunctionContext:
        return FunctionContext(self.builtins, self._secret, self.docker, mask)

    # -- functions, chat, status -----------------------------------------------------------

    def invoke(self, function: str, arguments: dict[str, Any], actor: str) -> dict[str, Any]:
        """Call a function by hand, as an agent's tool call would: {function, ok, result or
        error (masked), duration_ms}."""
        import jsonschema

        fn = self.function(function)
        try:
            jsonschema.validate(arguments, fn.parameters)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            raise AIError("invalid", f"{function}: {where}: {exc.message}") from None
        context = self._context(self.masking.masker())
        log.info("%s invokes function %s", actor, function)
        began = time.monotonic()
        try:
            done: dict[str, Any] = {"ok": True, "result": invoke_function(fn, arguments, context)}
        except FunctionError as exc:  # masked already
            done = {"ok": False, "error": str(exc)}
        return {
            "function": function,
            **done,
            "duration_ms": int((time.monotonic() - began) * 1000),
        }

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        on_delta: Callable[[str], None] | None = None,
        *,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """One reply of `model` (routed as an agent's `model:` is) to `messages`, of at most
        `max_tokens` (None: as long as the model likes)."""
        chat = self._model(model, self.masking.fingerprints()).chat
        reply = chat(messages, on_delta=on_delta, max_tokens=max_tokens)
        return {
            "model": model,
            "content": reply.content,
            "finish": reply.finish,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }

    def status(self) -> dict[str, Any]:
        """Each provider's reachability and models, and the Ollama models the agents need."""
        return {
            "providers": provider_status(self.endpoints()),
            "models": self.pulls.states(),
            "agents": len(self._agents),
            "functions": len(self._functions),
        }

    def diagnostics(self, limit: int = 500) -> dict[str, Any]:
        """Of the latest `limit` executions: the recent failures with their reasons, and per
        agent the count of each status and the average tokens and duration of those ended."""
        executions = self.store.agent_executions(limit=limit)
        agents: dict[str, dict[str, Any]] = {}
        for name in sorted({e.agent_name for e in executions}):
            mine = [e for e in executions if e.agent_name == name]
            ended = [e for e in mine if e.status in _ENDED]
            counts: dict[str, int] = {}
            for e in mine:
                counts[e.status] = counts.get(e.status, 0) + 1
            agents[name] = {
                "executions": len(mine),
                "statuses": counts,
                "average_tokens": round(mean(e.tokens_used for e in ended)) if ended else None,
                "average_duration_ms": round(mean(e.duration_ms or 0 for e in ended))
                if ended
                else None,
            }
        failures = [
            {
                "id": e.id,
                "agent": e.agent_name,
                "status": e.status,
                "reason": e.reason,
                "created_at": e.created_at,
            }
            for e in executions
            if e.status in _FAILED
        ][:20]
        return {"agents": agents, "recent_failures": failures, "models": self.pulls.states()}


def needs_approval(agent: AgentDef, fn: FunctionDef) -> bool:
    """A person approves the call: the agent asks for every call, the function for each of
    its calls, or it is a writing built-in the agent's `autoApprove` does not name."""
    return (
        agent.require_approval
        or fn.require_approval
        or (fn.writes and fn.name not in agent.auto_approve)
    )


def _brief(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data for the bus: short values only (a tool's whole result stays out)."""
    return {k: v for k, v in data.items() if not isinstance(v, str) or len(v) <= 200}


def _no_secrets(name: str) -> str:
    raise NebulaError(f"secret {name!r} is not available before the first sync")
