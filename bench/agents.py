"""Agents: the loop's overhead per turn beside a direct call, and one task beside smolagents.

    python3 bench/agents.py [--turns 30] [--runs 3] [--max-steps 6] [--threads 2]
                            [--only overhead|service|smolagents] [--json PATH]

The model is real: SmolLM2-135M on llama.cpp's OpenAI-compatible server (xllamacpp, CPU), started
as the test suite starts it (`tests/llm_servers.py`) with --threads threads, on loopback.

1. **Overhead per turn**: the same messages, tool and options (temperature 0, 16 tokens at
   most, so both get the same reply) sent --turns times by Nebula (`run_loop`, one turn through
   its `openai` provider: message building, tool specs, guardrail checks, streaming with
   events, token counting) and by the official `openai` client called directly (streaming, the
   reply assembled), in pairs, each pair in alternating order. The overhead is the median of
   each pair's difference (Nebula minus direct), wall and this process's CPU time.
   **In nebulad's service**: the same turn as a one-turn execution of the same agent (declared
   in a config repo loaded by the real loader, its provider's key and a few other secrets in
   the vault of a SQLite store) run by nebulad's `AI` service (`AI.run`: the model opened, the
   masker built from the vault, a worker thread, the turn recorded as a step with the state
   saved, events published, the execution finished), in pairs beside the same direct call.
2. **Beside smolagents**: the same task, tool and model run --runs times by Nebula and by
   smolagents' `ToolCallingAgent` (`OpenAIServerModel` pointed at the same server), each
   allowed --max-steps model replies: turns (model replies), tokens (prompt + completion, as
   the server counts them), the tool's calls, wall time, and whether it answered. Nebula runs
   the agent as it would be declared for a model without native tool calls on this server
   (`toolCalling: react`, `toolChoice: required`); smolagents uses the API's tool calls, its
   only mode, its `final_answer` being a tool.

Targets (from the issue): overhead under 5 ms per turn (median); Nebula no more tokens and no
more turns than smolagents.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

import stacks
from llm_servers import LlmServer, llama_server
from nebula.ai.builtins import Builtins
from nebula.ai.guardrails import Guardrails
from nebula.ai.loop import LoopState, run_loop
from nebula.ai.service import AI
from nebula.daemon.events import EventBus
from nebula.engine.load import load_desired
from nebula.kinds.agents.types import AgentDef
from nebula.kinds.functions.types import FunctionDef
from nebula.providers.docker import DockerProvider
from nebula.providers.llm import ChatModel, Endpoint, open_model
from nebula.secrets import open_vault
from nebula.secrets.resolve import vault_secrets
from nebula.store import Store

TARGET_OVERHEAD_MS = 5.0
TASK = "Is the web installation up?"
SYSTEM = "You are a homelab's ops assistant. Use the tools, then answer briefly."
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


def status(installation: str) -> str:
    return f"{installation}: running, healthy"


def agent(**changes: Any) -> AgentDef:
    fields: dict[str, Any] = {
        "name": "bench",
        "description": "",
        "system_prompt": SYSTEM,
        "model": "local:smollm2:135m",
        "temperature": 0.0,
        "tools": ("status",),
        "max_tokens": 200,
    }
    return AgentDef(**(fields | changes))


def open_local(server: LlmServer, profile: AgentDef) -> ChatModel:
    endpoints = {"local": Endpoint("local", "openai", server.openai_url)}
    return open_model(profile.model, endpoints, 120)


def nebula_run(model: ChatModel, profile: AgentDef) -> tuple[LoopState, str, int]:
    """One run of `profile` on TASK: its final state, status and the tool's calls."""
    calls = 0

    def invoke(fn: FunctionDef, arguments: dict[str, Any]) -> str:
        nonlocal calls
        calls += 1
        return status(**arguments)

    state = LoopState([{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}])
    outcome = run_loop(
        profile,
        model,
        {"status": STATUS},
        state,
        invoke=invoke,
        needs_approval=lambda fn: False,
        guard=Guardrails.of(profile),
        deadline=time.monotonic() + 300,
        emit=lambda event: None,
        mask=lambda text: text,
    )
    return outcome.state, outcome.status, calls


# -- 1. overhead per turn ------------------------------------------------------------------------


def direct_call(server: LlmServer) -> Callable[[], str]:
    """The turn's request by the official `openai` client, streamed, the reply assembled."""
    client = openai.OpenAI(base_url=server.openai_url, api_key="unused", max_retries=0)
    tool = {
        "type": "function",
        "function": {
            "name": STATUS.name,
            "description": STATUS.description,
            "parameters": STATUS.parameters,
        },
    }

    def direct() -> str:
        stream = client.chat.completions.create(
            model="smollm2:135m",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice="auto",
            temperature=0.0,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
        return "".join(parts)

    return direct


def paired(nebula: Callable[[], str], direct: Callable[[], str], turns: int) -> dict[str, Any]:
    """`turns` pairs, each in alternating order, after 3 warm-up pairs (connections, the
    server's prompt cache): medians of each side and of the pairs' differences, in ms."""

    def timed(call: Callable[[], str]) -> tuple[float, float, str]:
        wall, cpu = time.perf_counter(), time.process_time()
        reply = call()
        return time.perf_counter() - wall, time.process_time() - cpu, reply

    for _ in range(3):
        direct(), nebula()
    walls: dict[str, list[float]] = {"nebula": [], "direct": [], "diff": [], "cpu_diff": []}
    cpus: dict[str, list[float]] = {"nebula": [], "direct": []}
    same = 0
    for i in range(turns):
        order = [("nebula", nebula), ("direct", direct)]
        results = dict((name, timed(call)) for name, call in (order if i % 2 else order[::-1]))
        for name in ("nebula", "direct"):
            walls[name].append(results[name][0])
            cpus[name].append(results[name][1])
        walls["diff"].append(results["nebula"][0] - results["direct"][0])
        walls["cpu_diff"].append(results["nebula"][1] - results["direct"][1])
        same += results["nebula"][2] == results["direct"][2]
    ms = {k: statistics.median(v) * 1000 for k, v in walls.items()}
    return {
        "turns": turns,
        "same_reply": same,
        "nebula_turn_ms": round(ms["nebula"], 2),
        "direct_call_ms": round(ms["direct"], 2),
        "overhead_ms": round(ms["diff"], 2),
        "overhead_cpu_ms": round(ms["cpu_diff"], 2),
        "nebula_cpu_ms": round(statistics.median(cpus["nebula"]) * 1000, 2),
        "direct_cpu_ms": round(statistics.median(cpus["direct"]) * 1000, 2),
        "pass": ms["diff"] < TARGET_OVERHEAD_MS,
    }


def overhead(server: LlmServer, turns: int) -> dict[str, Any]:
    profile = agent(max_tokens=16, max_turns=1)
    model = open_local(server, profile)  # once, as the client is: the turn is what is timed

    def nebula() -> str:
        state, _, _ = nebula_run(model, profile)
        return str(state.messages[-1]["content"])

    return paired(nebula, direct_call(server), turns)


# -- 1b. overhead per execution in nebulad's AI service -------------------------------------------

SECRETS = 5  # vault secrets besides the provider's key: the masker hides each of them


def config_repo(root: Path, server: LlmServer) -> Path:
    """A config repo holding the overhead measure's agent and tool, on this server."""
    repo = root / "repo"
    (repo / "agents").mkdir(parents=True)
    (repo / "functions").mkdir()
    ai = {"providers": {"local": {"base_url": server.openai_url, "api_key": "${secret:llm_key}"}}}
    (repo / "nebula.yaml").write_text(json.dumps({"ai": ai}))
    status_fn = {
        "name": STATUS.name,
        "description": STATUS.description,
        "parameters": STATUS.parameters,
        "implementation": "http://127.0.0.1:9/status",  # never called: one turn, no tool call
        "implementation_type": "http",
    }
    (repo / "functions" / "status.yaml").write_text(json.dumps(status_fn))
    bench_agent = {
        "name": "bench",
        "description": "The overhead measure's agent",
        "systemPrompt": SYSTEM,
        "model": "local:smollm2:135m",
        "temperature": 0,
        "tools": [STATUS.name],
        "context": {"maxTokens": 16},
        "maxTurns": 1,
    }
    (repo / "agents" / "bench.yaml").write_text(json.dumps(bench_agent))
    return repo


def service(server: LlmServer, turns: int) -> dict[str, Any]:
    """One-turn executions through nebulad's `AI` service (`AI.run`: model, masker, worker
    thread, steps and state in a SQLite store, events), configured from a config repo by the
    real loader, in pairs beside the direct call."""
    with stacks.scratch_dir("nebula-bench-agents-") as root:
        os.environ["NEBULA_MASTER_KEY_FILE"] = str(root / "master.key")
        with Store(f"sqlite:///{root}/nebula.db") as store:
            vault = open_vault(store)
            vault.init()
            vault.set("llm_key", "unused-by-llama-cpp")
            for n in range(SECRETS):
                vault.set(f"token{n}", f"secret-value-{n}-{'x' * 24}")
            docker = DockerProvider("unix:///nonexistent.sock")  # no tool runs a container
            ai = AI(store, EventBus().publish, Builtins(store, lambda: docker), lambda: docker)
            ai.configure(load_desired(config_repo(root, server)), vault_secrets(store))

            def nebula() -> str:
                ran = ai.run("bench", TASK, "bench")
                if ran.status != "completed":
                    raise RuntimeError(f"the execution ended {ran.status}: {ran.reason}")
                return ran.output or ""

            return paired(nebula, direct_call(server), turns)


# -- 2. beside smolagents ------------------------------------------------------------------------


@dataclass
class Run:
    turns: int
    tokens: int
    calls: int
    seconds: float
    answered: bool


def smolagents_run(server: LlmServer, max_steps: int) -> Run:
    from smolagents import ActionStep, OpenAIServerModel, Tool, ToolCallingAgent

    calls = 0

    class Status(Tool):  # type: ignore[misc]
        name = STATUS.name
        description = STATUS.description
        inputs = {
            "installation": {
                "type": "string",
                "description": "web or db",
                "enum": ["web", "db"],
            }
        }
        output_type = "string"

        def forward(self, installation: str) -> str:
            nonlocal calls
            calls += 1
            return status(installation)

    model = OpenAIServerModel(
        model_id="smollm2:135m",
        api_base=server.openai_url,
        api_key="unused",
        temperature=0.0,
        max_tokens=200,
    )
    runner = ToolCallingAgent(
        tools=[Status()], model=model, max_steps=max_steps, verbosity_level=-1
    )
    start = time.perf_counter()
    answer = runner.run(TASK)
    seconds = time.perf_counter() - start
    steps = [s for s in runner.memory.steps if isinstance(s, ActionStep)]
    answered = any(s.is_final_answer for s in steps) and answer is not None
    tokens = runner.monitor.get_total_token_counts().total_tokens
    return Run(len(steps), tokens, calls, seconds, answered)


def nebula_task(server: LlmServer, max_steps: int) -> Run:
    profile = agent(tool_calling="react", tool_choice="required", max_turns=max_steps)
    start = time.perf_counter()
    state, status_, calls = nebula_run(open_local(server, profile), profile)
    seconds = time.perf_counter() - start
    return Run(state.turns, state.tokens, calls, seconds, status_ == "completed")


def beside(server: LlmServer, runs: int, max_steps: int) -> dict[str, Any]:
    results: dict[str, list[Run]] = {"nebula": [], "smolagents": []}
    for _ in range(runs):
        results["nebula"].append(nebula_task(server, max_steps))
        results["smolagents"].append(smolagents_run(server, max_steps))
    summary = {
        name: {
            "turns": statistics.median(r.turns for r in rs),
            "tokens": statistics.median(r.tokens for r in rs),
            "tool_calls": statistics.median(r.calls for r in rs),
            "seconds": round(statistics.median(r.seconds for r in rs), 2),
            "answered": sum(r.answered for r in rs),
        }
        for name, rs in results.items()
    }
    nebula, smol = summary["nebula"], summary["smolagents"]
    summary["pass"] = nebula["tokens"] <= smol["tokens"] and nebula["turns"] <= smol["turns"]
    return summary


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["overhead", "service", "smolagents"])
    args = parser.parse_args()
    logging.getLogger("smolagents").setLevel(logging.ERROR)
    result: dict[str, Any] = {"benchmark": "agents", "machine_before": stacks.machine()}
    rows = []
    with llama_server(threads=args.threads) as server:
        if args.only in (None, "overhead"):
            o = result["overhead"] = overhead(server, args.turns)
            stacks.print_table(
                f"One turn, {o['turns']} pairs (same reply in {o['same_reply']}); ms, median",
                ["how", "wall", "CPU (this process)"],
                [
                    ["Nebula (run_loop, one turn)", o["nebula_turn_ms"], o["nebula_cpu_ms"]],
                    ["openai client, direct", o["direct_call_ms"], o["direct_cpu_ms"]],
                    ["difference (median of pairs)", o["overhead_ms"], o["overhead_cpu_ms"]],
                ],
            )
            rows.append(
                [
                    "orchestration overhead per turn",
                    f"{o['overhead_ms']:.2f} ms",
                    f"< {TARGET_OVERHEAD_MS:g} ms",
                    stacks.verdict(o["pass"]),
                ]
            )
        if args.only in (None, "service"):
            o = result["service"] = service(server, args.turns)
            stacks.print_table(
                f"One one-turn execution in nebulad's AI service, {o['turns']} pairs "
                f"(same reply in {o['same_reply']}); ms, median",
                ["how", "wall", "CPU (this process)"],
                [
                    ["Nebula (AI.run, one turn)", o["nebula_turn_ms"], o["nebula_cpu_ms"]],
                    ["openai client, direct", o["direct_call_ms"], o["direct_cpu_ms"]],
                    ["difference (median of pairs)", o["overhead_ms"], o["overhead_cpu_ms"]],
                ],
            )
            rows.append(
                [
                    "overhead per execution (one turn) in the service",
                    f"{o['overhead_ms']:.2f} ms",
                    f"< {TARGET_OVERHEAD_MS:g} ms",
                    stacks.verdict(o["pass"]),
                ]
            )
        if args.only in (None, "smolagents"):
            b = result["smolagents"] = beside(server, args.runs, args.max_steps)
            n, s = b["nebula"], b["smolagents"]
            stacks.print_table(
                f"The same task, tool and model, {args.runs} runs (medians), "
                f"at most {args.max_steps} replies",
                ["figure", "Nebula", "smolagents", "smolagents / Nebula"],
                [
                    [k, n[k], s[k], f"{stacks.ratio(s[k], n[k]):.2f}"]
                    for k in ("turns", "tokens", "tool_calls", "seconds")
                ]
                + [
                    ["answered", f"{n['answered']}/{args.runs}", f"{s['answered']}/{args.runs}", ""]
                ],
            )
            rows.append(
                [
                    "turns and tokens beside smolagents",
                    f"{n['turns']} / {n['tokens']} vs {s['turns']} / {s['tokens']}",
                    "no more",
                    stacks.verdict(b["pass"]),
                ]
            )
    stacks.print_table(
        "Against the issue's targets", ["figure", "measured", "target", "verdict"], rows
    )
    result["machine_after"] = stacks.machine()
    stacks.emit_json(result, args.json)


if __name__ == "__main__":
    main()
