"""The API's AI routes: agents, their executions and approvals, functions, chat with a model,
the providers' state.

    GET    /api/v1/agents                        {"agents": [...]}: those of the last sync
    POST   /api/v1/agents                        body: an agent as agents/NAME.yaml holds it
                                                 (JSON): 201 {commit, message, files}; 409
                                                 when it exists, 422 {error, problems: [{file,
                                                 line, column, field, message}]} when invalid
    GET    /api/v1/agents/{name}                 the agent, with its latest executions
    PUT    /api/v1/agents/{name}                 as POST, for an agent that exists (404 else)
    POST   /api/v1/agents/{name}/execute         body {"task", "incident"?}: 202 {"id"}; with
                                                 `Accept: text/event-stream` or `?stream=1`, the
                                                 execution's events as server-sent events (below)
    GET    /api/v1/agents/{name}/history?limit=N {"executions": [...]}, newest first (N: 50)
    GET    /api/v1/agents/executions?status=S&limit=N   {"executions": [...]}: every agent's,
                                                 newest first (S: waiting_approval, the ones a
                                                 person must answer; N: 50)
    GET    /api/v1/agents/executions/{id}        one execution with its steps, oldest first
    POST   /api/v1/agents/executions/{id}/approve|reject   the tool call it waits on; 409
                                                 when it waits for none
    GET    /api/v1/functions                     {"functions": [...]}: those of the last sync
    POST   /api/v1/functions                     body: a function as functions/NAME.yaml holds
                                                 it: as POST /agents
    GET    /api/v1/functions/{name}              the function
    POST   /api/v1/functions/{name}/invoke       body {"arguments": {...}}: {function, result,
                                                 duration_ms}; 400 when the arguments do not
                                                 match its parameters
    POST   /api/v1/ai/chat                       body {"model", "messages", "stream"?,
                                                 "max_tokens"?}: the
                                                 reply {model, content, finish, *_tokens}
                                                 (502 when its server fails); with
                                                 "stream": true, `delta` events ({text}) then
                                                 `done` (the reply) or `error` ({error})
    GET    /api/v1/ai/status                     {providers: [{name, kind, url, reachable,
                                                 models, error}], models: the Ollama models
                                                 agents need and their pulls, agents, functions}
    GET    /api/v1/ai/diagnostics                {agents: per agent the count of each status,
                                                 average tokens and duration; recent_failures,
                                                 models}

An execution's stream: `execution` ({id, agent, actor}), then the loop's events as they come
(`turn`, `delta` {text}, `tool_call` {name, arguments}, `tool_result` {name, ok, excerpt},
`approval` {the call waiting}, `final` {output}, `error` {reason}), and last `end` ({id,
status, output, reason, tokens_used, duration_ms, pending}) when it ends or pauses for an
approval. The execution goes on when the client goes away.

Reads need a viewer; runs, approvals, invocations, chat and commits an operator (as the
marketplace's). Each mutation is in the audit log (`daemon.audit.ACTIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from nebula.daemon.auth import GuardedRoute, route
from nebula.daemon.auth_api import JsonBody, JsonResponse
from nebula.daemon.catalog_api import InvalidEditError
from nebula.daemon.control import ControlError, DaemonControl
from nebula.daemon.params import query_limit
from nebula.daemon.remediation_api import _actor
from nebula.errors import NebulaError, ProviderError
from nebula.identity.principal import Role

if TYPE_CHECKING:
    from nebula.ai.service import AI

PREFIX = "/api/v1"
HEARTBEAT = 15.0  # seconds of silence on a stream before a comment line
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def ai_routes(
    control: DaemonControl, json_body: JsonBody, json: JsonResponse
) -> list[GuardedRoute]:
    """The routes; `json_body(request)` and `json(value, status, headers)` are the API's own."""
    api = _AiApi(control, json_body, json)
    viewer, operator = Role.viewer, Role.operator
    agents, functions = f"{PREFIX}/agents", f"{PREFIX}/functions"
    execution = f"{agents}/executions/{{execution_id}}"
    return [
        route(agents, api.agents, ["GET"], role=viewer),
        route(agents, api.create_agent, ["POST"], role=operator),
        route(f"{agents}/executions", api.executions, ["GET"], role=viewer),
        route(execution, api.execution, ["GET"], role=viewer),
        route(f"{execution}/approve", api.approve, ["POST"], role=operator),
        route(f"{execution}/reject", api.reject, ["POST"], role=operator),
        route(f"{agents}/{{name}}", api.agent, ["GET"], role=viewer),
        route(f"{agents}/{{name}}", api.update_agent, ["PUT"], role=operator),
        route(f"{agents}/{{name}}/execute", api.execute, ["POST"], role=operator),
        route(f"{agents}/{{name}}/history", api.history, ["GET"], role=viewer),
        route(functions, api.functions, ["GET"], role=viewer),
        route(functions, api.register_function, ["POST"], role=operator),
        route(f"{functions}/{{name}}", api.function, ["GET"], role=viewer),
        route(f"{functions}/{{name}}/invoke", api.invoke, ["POST"], role=operator),
        route(f"{PREFIX}/ai/chat", api.chat, ["POST"], role=operator),
        route(f"{PREFIX}/ai/status", api.status, ["GET"], role=viewer),
        route(f"{PREFIX}/ai/diagnostics", api.diagnostics, ["GET"], role=viewer),
    ]


class _AiApi:
    def __init__(self, control: DaemonControl, json_body: JsonBody, json: JsonResponse) -> None:
        self.control = control
        self.json_body = json_body
        self.json = json

    @property
    def ai(self) -> AI:
        return self.control.ai

    def _ok(self, value: Any, status: int = 200) -> Response:
        return self.json(value, status, None)

    # -- agents ----------------------------------------------------------------------------

    async def agents(self, request: Request) -> Response:
        return self._ok({"agents": await run_in_threadpool(self.ai.agents)})

    async def agent(self, request: Request) -> Response:
        name = request.path_params["name"]
        return self._ok(await run_in_threadpool(self.ai.describe_agent, name))

    async def create_agent(self, request: Request) -> Response:
        return await self._save(request, "agents", create=True)

    async def update_agent(self, request: Request) -> Response:
        return await self._save(request, "agents", create=False)

    async def execute(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self.json_body(request)
        task = body.get("task")
        if not isinstance(task, str) or not task.strip():
            raise ControlError("invalid", 'give the agent a task: {"task": "..."}')
        incident = body.get("incident")
        if incident is not None and not isinstance(incident, str):
            raise ControlError("invalid", '"incident" is an incident\'s id')
        actor = _actor(request)
        if not _wants_stream(request):
            started = await run_in_threadpool(self.ai.execute, name, task, actor, incident)
            return self._ok({"id": started}, 202)
        stream = _Stream(asyncio.get_running_loop(), ends_with="end")
        await run_in_threadpool(self.ai.execute, name, task, actor, incident, stream.put)
        return StreamingResponse(
            stream.lines(request.app.state.closing),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
        )

    async def history(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = await run_in_threadpool(self.ai.history, name, query_limit(request, 50))
        return self._ok({"executions": found})

    async def executions(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        found = await run_in_threadpool(self.ai.executions, status, query_limit(request, 50))
        return self._ok({"executions": found})

    async def execution(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        return self._ok(await run_in_threadpool(self.ai.execution, execution_id))

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, approved=True)

    async def reject(self, request: Request) -> Response:
        return await self._decide(request, approved=False)

    async def _decide(self, request: Request, *, approved: bool) -> Response:
        execution_id = request.path_params["execution_id"]
        done = await run_in_threadpool(self.ai.decide, execution_id, approved, _actor(request))
        return self._ok(done)

    # -- functions -------------------------------------------------------------------------

    async def functions(self, request: Request) -> Response:
        return self._ok({"functions": await run_in_threadpool(self.ai.functions)})

    async def function(self, request: Request) -> Response:
        name = request.path_params["name"]
        return self._ok(await run_in_threadpool(self.ai.describe_function, name))

    async def register_function(self, request: Request) -> Response:
        return await self._save(request, "functions", create=True)

    async def invoke(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self.json_body(request)
        arguments = body.get("arguments", {})
        if not isinstance(arguments, dict):
            raise ControlError("invalid", '"arguments" is an object: {"arguments": {...}}')
        done = await run_in_threadpool(self.ai.invoke, name, arguments, _actor(request))
        return self._ok(done)

    # -- models ----------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = await self.json_body(request)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise ControlError("invalid", 'name the model: {"model": "ollama:llama3.2", ...}')
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
        ):
            raise ControlError(
                "invalid", '"messages" is a list of {"role": "user", "content": "..."}'
            )
        most = body.get("max_tokens")
        if most is not None and (type(most) is not int or not 1 <= most <= 100_000):
            raise ControlError("invalid", '"max_tokens" is a number from 1 to 100000')
        if not body.get("stream"):
            try:
                reply = await run_in_threadpool(
                    lambda: self.ai.chat(model, messages, max_tokens=most)
                )
                return self._ok(reply)
            except ProviderError as exc:  # the model's server failed: a gateway's error
                return self._ok({"error": str(exc)}, 502)
        stream = _Stream(asyncio.get_running_loop(), ends_with="done", or_with="error")

        def talk() -> None:
            try:
                reply = self.ai.chat(
                    model,
                    messages,
                    lambda text: stream.put("delta", {"text": text}),
                    max_tokens=most,
                )
            except NebulaError as exc:
                stream.put("error", {"error": str(exc)})
            else:
                stream.put("done", reply)

        threading.Thread(target=talk, name="ai-chat", daemon=True).start()
        return StreamingResponse(
            stream.lines(request.app.state.closing),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
        )

    async def status(self, request: Request) -> Response:
        return self._ok(await run_in_threadpool(self.ai.status))

    async def diagnostics(self, request: Request) -> Response:
        return self._ok(await run_in_threadpool(self.ai.diagnostics))

    # -- commits ---------------------------------------------------------------------------

    async def _save(self, request: Request, folder: str, *, create: bool) -> Response:
        """Commit `FOLDER/NAME.yaml` from the body (NAME: the path's, else the body's)."""
        body = await self.json_body(request)
        name, document = named_document(request, body, "ops-assistant")
        try:
            done = await run_in_threadpool(
                self.control.save_definition, folder, name, document, _actor(request), create
            )
        except InvalidEditError as exc:
            problems = [issue.__dict__ for issue in exc.issues]
            return self._ok({"error": str(exc), "problems": problems}, 422)
        return self._ok(done, 201 if create else 200)


def named_document(
    request: Request, body: dict[str, Any], example: str
) -> tuple[str, dict[str, Any]]:
    """A definition's name (the path's, else the body's; both: the same) and its document with
    the name first, from a POST or PUT body."""
    name = request.path_params.get("name") or body.get("name")
    if not isinstance(name, str) or not name:
        raise ControlError("invalid", f'give its name: {{"name": "{example}", ...}}')
    if body.get("name", name) != name:
        raise ControlError("invalid", f'"name" is {body["name"]!r}, not {name!r} as the path says')
    return name, {"name": name, **{k: v for k, v in body.items() if k != "name"}}


def _wants_stream(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/event-stream" in accept or request.query_params.get("stream") in ("1", "true")


class _Stream:
    """Events put by a worker thread, sent to one client as server-sent events until the one
    that ends the stream (or nebulad stops)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ends_with: str, or_with: str = "") -> None:
        self.loop = loop
        self.last = {ends_with, or_with} - {""}
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, kind: str, data: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, data))

    async def lines(self, closing: threading.Event) -> AsyncIterator[bytes]:
        """The events; a comment line when none came for `HEARTBEAT` seconds (a model thinking
        long), so the client and the proxies between keep the stream open."""
        quiet = 0.0
        while not closing.is_set():
            try:
                kind, data = await asyncio.wait_for(self.queue.get(), timeout=0.5)
            except TimeoutError:
                quiet += 0.5
                if quiet >= HEARTBEAT:
                    quiet = 0.0
                    yield b": heartbeat\n\n"
                continue
            quiet = 0.0
            yield sse(kind, data)
            if kind in self.last:
                return


def sse(kind: str, data: Any) -> bytes:
    """One server-sent event: `event: KIND` and `data: JSON`."""
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()
