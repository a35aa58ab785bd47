"""`nebula agents|functions|ai`: the agents and functions of the last synced commit, run and
approved through nebulad's API (see `nebula.cli.client` for how the daemon is found)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from nebula.cli.commands.daemon import DaemonUrl, Socket, _client, _escape, _when
from nebula.cli.commands.incidents import styled
from nebula.cli.options import Output
from nebula.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    OutputFormat,
    abort,
    console,
    err_console,
    handle_errors,
    print_json,
    print_list,
    print_table,
)

app = typer.Typer(
    help="Agents: a model with a system prompt and tools (functions), declared in the config "
    "repo's agents/*.yaml and run by nebulad.\n\n"
    "A tool that changes something (restart, apply, install) waits for a person unless the "
    "agent's guardrails.autoApprove names it: the run pauses, and `nebula agents approve` or "
    "`reject` answers.\n\n"
    "Examples:\n\n"
    "  nebula agents list\n\n"
    '  nebula agents run ops-assistant "why is the blog down?"\n\n'
    '  nebula agents run ops-assistant "summarise open incidents" --output json\n\n'
    "  nebula agents history ops-assistant\n\n"
    "  nebula agents approve 5d0c…",
    no_args_is_help=True,
)
functions_app = typer.Typer(
    help="Functions: the tools agents call, declared in functions/*.yaml (a built-in, a URL "
    "or a container image).\n\n"
    "Examples:\n\n"
    "  nebula functions list\n\n"
    "  nebula functions invoke logs --arg installation=blog --arg lines=20\n\n"
    "  nebula functions invoke status --json '{}'",
    no_args_is_help=True,
)
ai_app = typer.Typer(
    help="The model providers nebulad reaches (nebula.yaml's ai:), and the Ollama models "
    "agents need.\n\nExample:\n\n  nebula ai status",
    no_args_is_help=True,
)
ExecutionId = Annotated[str, typer.Argument(help="An execution (see `nebula agents history`).")]
AgentName = Annotated[str, typer.Argument(help="The agent (see `nebula agents list`).")]
_STYLE = {
    "completed": "green",
    "present": "green",
    "running": "cyan",
    "pulling": "cyan",
    "waiting_approval": "yellow",
    "interrupted": "yellow",
    "missing": "yellow",
    "failed": "red",
    "blocked": "red",
    "timed_out": "red",
    "rejected": "red",
}
_ENDED_BADLY = frozenset({"failed", "blocked", "timed_out", "rejected", "interrupted"})


@app.command("list")
def list_agents(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """The agents of the last synced commit: model, tools, last execution."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.agents()
    print_list(
        output,
        found,
        ("agent", "model", "tools", "last execution"),
        (
            (
                _escape(a["name"]),
                _escape(a["model"]),
                _escape(", ".join(a["tools"])),
                _last(a["last_execution"]),
            )
            for a in found
        ),
        "No agents: add agents/*.yaml to the config repo (see examples/).",
    )


@app.command()
def show(
    name: AgentName,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """One agent: its profile, guardrails and latest executions."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.agent(name)
    if output is OutputFormat.json:
        print_json(found)
        return
    out = console()
    out.print(f"[bold]{_escape(found['name'])}[/]  {_escape(found['description'])}")
    for label, value in (
        ("model", found["model"]),
        ("tools", ", ".join(found["tools"]) or "none"),
        ("tool calling", f"{found['tool_calling']}, {found['tool_choice']}"),
        ("limits", f"{found['max_turns']} turns, {found['max_execution_time']:g}s"),
        ("approval", _approval(found)),
        ("blocked patterns", ", ".join(found["blocked_patterns"]) or "none"),
        ("file", found["file"]),
    ):
        out.print(f"  {label}: {_escape(str(value))}")
    if found["executions"]:
        out.print()
        _executions(found["executions"])


@app.command()
def run(
    name: AgentName,
    task: Annotated[str, typer.Argument(help="What to do, in words.")],
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Wait for the end instead of printing as it goes.")
    ] = False,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Run an agent on a task. Its reply prints as the model writes it, tool calls and their
    results as dim lines; a tool call waiting for approval ends the command with the execution
    id to approve. Exit 1 when the run fails, is blocked, times out or is rejected.
    `--output json` waits for the end and prints the execution with its steps."""
    with handle_errors(output), _client(socket, daemon) as client:
        if no_stream or output is OutputFormat.json:
            execution_id = client.execute_agent(name, task)
            if output is OutputFormat.table:
                err_console().print(f"execution {execution_id} started", style="dim")
            found = _until_stopped(client, execution_id)
            end = {**found, "id": execution_id}
            if output is OutputFormat.json:
                print_json(found)
            elif found["output"]:
                console().print(found["output"], markup=False)
        else:
            end = _stream(client.stream_agent(name, task))
    if output is OutputFormat.table:
        _say_end(end)
    if end["status"] in _ENDED_BADLY:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def history(
    name: AgentName,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many.")] = 20,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """An agent's executions, newest first: status, tokens, duration, who ran it."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.agent_history(name, limit)
    if output is OutputFormat.json:
        print_json(found)
    elif found:
        _executions(found)
    else:
        console().print(f'{name} has not run yet: `nebula agents run {name} "..."`', markup=False)


@app.command("execution")
def execution(
    execution_id: ExecutionId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """One execution: its task, answer, and each turn and tool call."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.agent_execution(execution_id)
    if output is OutputFormat.json:
        print_json(found)
        return
    out = console()
    out.print(
        f"[bold]{_escape(found['agent_name'])}[/] execution {_escape(found['id'])}  "
        f"{styled(found['status'], _STYLE)}  {found['tokens_used']} tokens"
    )
    out.print(f"task: {found['input']}", markup=False)
    for step in found.get("steps", []):
        out.print(f"  {step['kind']}: {_short(step['detail'])}", style="dim", markup=False)
    if found["output"]:
        out.print(found["output"], markup=False)
    if found["reason"]:
        out.print(f"reason: {found['reason']}", markup=False)


@app.command()
def approve(
    execution_id: ExecutionId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Let the tool call an execution waits on run; the execution goes on in nebulad."""
    _decide(execution_id, True, socket, daemon, output)


@app.command()
def reject(
    execution_id: ExecutionId,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Refuse the tool call an execution waits on: the execution ends rejected."""
    _decide(execution_id, False, socket, daemon, output)


def _decide(
    execution_id: str, approved: bool, socket: Any, daemon: str | None, output: OutputFormat
) -> None:
    with handle_errors(output), _client(socket, daemon) as client:
        done = client.decide_agent(execution_id, approved)
    if output is OutputFormat.json:
        print_json(done)
    elif approved:
        console().print(
            f"Approved: execution {execution_id} goes on "
            f"(`nebula agents execution {execution_id}`).",
            markup=False,
        )
    else:
        console().print(f"Rejected: execution {execution_id} ends here.", markup=False)


# -- functions ---------------------------------------------------------------------------


@functions_app.command("list")
def list_functions(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """The functions of the last synced commit: what each runs and whether it asks first."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.functions()
    print_list(
        output,
        found,
        ("function", "type", "implementation", "description"),
        (
            (
                _escape(f["name"]),
                f["implementation_type"],
                _escape(f["implementation"]),
                _escape(f["description"]),
            )
            for f in found
        ),
        "No functions: add functions/*.yaml to the config repo (see examples/).",
    )


@functions_app.command("show")
def show_function(
    name: Annotated[str, typer.Argument(help="The function (see `nebula functions list`).")],
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """One function: its parameters (JSON Schema), what it runs, the agents using it."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.function(name)
    if output is OutputFormat.json:
        print_json(found)
        return
    out = console()
    out.print(f"[bold]{_escape(found['name'])}[/]  {_escape(found['description'])}")
    out.print(f"  runs: {found['implementation_type']} {found['implementation']}", markup=False)
    out.print(f"  writes: {'yes' if found['writes'] else 'no'}", markup=False)
    out.print(f"  used by: {', '.join(found['agents']) or 'no agent'}", markup=False)
    out.print("  parameters:", markup=False)
    out.print(json.dumps(found["parameters"], indent=2), markup=False)


@functions_app.command("invoke")
def invoke(
    name: Annotated[str, typer.Argument(help="The function (see `nebula functions list`).")],
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            "-a",
            help="An argument, KEY=VALUE (repeat it); a VALUE that is JSON (20, true) is "
            "taken as such.",
        ),
    ] = None,
    json_arguments: Annotated[
        str | None, typer.Option("--json", help="All the arguments as one JSON object.")
    ] = None,
    socket: Socket = None,
    daemon: DaemonUrl = None,
    output: Output = OutputFormat.table,
) -> None:
    """Call a function by hand, as an agent's tool call would (its arguments are checked
    against its parameters first); exit 1 when it fails."""
    arguments = _arguments(arg or [], json_arguments)
    with handle_errors(output), _client(socket, daemon) as client:
        done = client.invoke_function(name, arguments)
    if output is OutputFormat.json:
        print_json(done)
    elif done["ok"]:
        console().print(_pretty(done["result"]), markup=False)
    else:
        err_console().print(f"error: {done['error']}", markup=False)
    if not done["ok"]:
        raise typer.Exit(EXIT_FAILED)


# -- providers ---------------------------------------------------------------------------


@ai_app.command("status")
def ai_status(
    socket: Socket = None, daemon: DaemonUrl = None, output: Output = OutputFormat.table
) -> None:
    """Each model provider: reachable or why not, and its models; the Ollama models agents
    need: present, being pulled (with progress), or failed."""
    with handle_errors(output), _client(socket, daemon) as client:
        found = client.ai_status()
    if output is OutputFormat.json:
        print_json(found)
        return
    providers = found["providers"]
    if providers:
        print_table(
            ("provider", "kind", "url", "reachable", "models"),
            (
                (
                    _escape(p["name"]),
                    p["kind"],
                    _escape(p["url"]),
                    "[green]yes[/]" if p["reachable"] else f"[red]no[/]: {_escape(p['error'])}",
                    _escape(", ".join(p["models"])),
                )
                for p in providers
            ),
        )
    else:
        console().print("No model provider configured (nebula.yaml's ai:).")
    if found["models"]:
        console().print()
        print_table(
            ("Ollama model", "state"), ((m["model"], model_state(m)) for m in found["models"])
        )


def model_state(model: dict[str, Any]) -> str:
    """`present`, `pulling 42%`, `failed: reason` (rich markup)."""
    state = str(model["state"])
    if state == "pulling" and model.get("percent") is not None:
        return f"[cyan]pulling {model['percent']}%[/]"
    shown = styled(state, _STYLE)
    return f"{shown}: {_escape(model['error'])}" if model.get("error") else shown


# -- rendering ---------------------------------------------------------------------------


def _stream(items: Any) -> dict[str, Any]:
    """Print an execution's events as they come; its `end`."""
    out, dim = console(), err_console()
    writing = False  # the model's text is being printed: a newline before anything else
    for item in items:
        kind, data = item.kind, item.data
        if kind is None:
            continue
        if kind == "delta":
            out.print(data.get("text", ""), end="", markup=False)
            writing = True
            continue
        if writing:
            out.print()
            writing = False
        if kind == "execution":
            dim.print(f"execution {data['id']}", style="dim", markup=False)
        elif kind == "tool_call":
            call = f"→ {data.get('name')}({json.dumps(data.get('arguments'))})"
            dim.print(call, style="dim", markup=False)
        elif kind == "tool_result":
            mark = "←" if data.get("ok", True) else "✗"
            excerpt = _short(data.get("excerpt", ""))
            dim.print(f"{mark} {data.get('name')}: {excerpt}", style="dim", markup=False)
        elif kind == "end":
            return dict(data)
    abort("the stream ended before the execution did: see `nebula agents history`")


def _until_stopped(client: Any, execution_id: str) -> dict[str, Any]:
    while True:
        found: dict[str, Any] = client.agent_execution(execution_id)
        if found["status"] != "running":
            return found
        time.sleep(0.5)


def _say_end(end: dict[str, Any]) -> None:
    status = end["status"]
    took = f"{end['duration_ms'] / 1000:.1f}s" if end.get("duration_ms") is not None else ""
    facts = ", ".join(f for f in (f"{end.get('tokens_used', 0)} tokens", took) if f)
    err_console().print(f"{styled(status, _STYLE)} ({facts})")
    if status == "waiting_approval":
        pending = end.get("pending") or {}
        call = f"{pending.get('name', 'a tool')}({json.dumps(pending.get('arguments'))})"
        err_console().print(
            f"waiting for a person to approve {call}: "
            f"`nebula agents approve {end['id']}` or `nebula agents reject {end['id']}`",
            markup=False,
        )
    elif end.get("reason"):
        err_console().print(f"reason: {end['reason']}", markup=False)


def _executions(found: list[dict[str, Any]]) -> None:
    print_table(
        ("id", "status", "tokens", "duration", "by", "started", "task"),
        (
            (
                e["id"],
                styled(e["status"], _STYLE),
                str(e["tokens_used"]),
                f"{e['duration_ms'] / 1000:.1f}s" if e["duration_ms"] is not None else "",
                _escape(e["actor"] or ""),
                _when(e["created_at"], seconds=False),
                _escape(_short(e["input"], 50)),
            )
            for e in found
        ),
    )


def _last(last: dict[str, Any] | None) -> str:
    if last is None:
        return "never"
    return f"{styled(last['status'], _STYLE)} {_when(last['created_at'], seconds=False)}"


def _approval(agent: dict[str, Any]) -> str:
    if agent["require_approval"]:
        return "every tool call"
    auto = ", ".join(agent["auto_approve"])
    return "writing tools" + (f" except {auto}" if auto else "")


def _arguments(pairs: list[str], raw: str | None) -> dict[str, Any]:
    """`--json` and `--arg KEY=VALUE`s as one object; exit 2 when one is malformed."""
    arguments: dict[str, Any] = {}
    if raw is not None:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            abort(f"--json is not valid JSON: {exc}", EXIT_INVALID)
        if not isinstance(parsed, dict):
            abort('--json takes an object: --json \'{"installation": "blog"}\'', EXIT_INVALID)
        arguments.update(parsed)
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            abort(f"--arg {pair!r}: write it KEY=VALUE, e.g. --arg lines=20", EXIT_INVALID)
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    return arguments


def _pretty(text: str) -> str:
    """A function's result: indented when it is JSON."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        return text


def _short(value: Any, width: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
