"""A local server speaking Ollama's API over a real model served by llama.cpp.

No Ollama binary can be installed here, so this server speaks Ollama's protocol, as the
official `ollama` client speaks it, and answers with llama.cpp's OpenAI-compatible server
(`llm_servers.py`), the same real model:

- `GET /api/version`, `GET /api/tags` (the models it has), `POST /api/show` (404 for a model it
  does not have);
- `POST /api/pull`: NDJSON progress (manifest, one layer in parts with `total`/`completed`,
  verifying, writing, `success`) for a model it has or its `library` holds (the pull puts it
  among its models, as Ollama's does); HTTP 404 `{"error": ...}` for any other;
- `POST /api/chat`: NDJSON streaming (or one JSON answer with `"stream": false`): text as it
  comes, tool calls as `message.tool_calls[].function.{name, arguments}` with the arguments as
  an object, a last line `done: true` with `done_reason`, `prompt_eval_count`, `eval_count` and
  the `*_duration` fields in nanoseconds; `options.temperature/num_predict/seed/stop`;
  `format` (a JSON schema, or `"json"`) as llama.cpp's `response_format`; tool results back as
  `role: "tool"` with `tool_name`; an unknown model is HTTP 404 `{"error": ...}`.

The model's template (what Ollama calls a model's TEMPLATE: how its prompt is built) opens a
tool call whenever tools are offered on a user turn: it sends llama.cpp the assistant prefill
`<tool_call>\\n`, `tool_choice: required` and `stop: ["</tool_call>"]`, which is how this small
model is made to call a tool (it never decides to by itself). Once tool results are in the
conversation it answers in text. That is how the native tool-calling path gets a real tool call
through the official `ollama` client.

`chats` keeps the body of every `/api/chat` request received, for tests that check what reached
the model.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

DIGEST = "sha256:" + "5a" * 32
SIZE = 100_000_000
PREFILL = "<tool_call>\n"


@dataclass
class OllamaDouble:
    url: str
    upstream: str  # llama.cpp's base URL
    models: dict[str, str]  # Ollama name → llama.cpp model alias
    chats: list[dict[str, Any]] = field(default_factory=list)
    library: dict[str, str] = field(default_factory=dict)  # what a pull can fetch, as `models`
    pulls: list[str] = field(default_factory=list)  # the models pulled, in order


@contextlib.contextmanager
def ollama_double(
    upstream: str, models: dict[str, str], library: dict[str, str] | None = None
) -> Iterator[OllamaDouble]:
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    double = OllamaDouble(url, upstream, models, library=dict(library or {}))
    handler.double = double
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    double: OllamaDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": "0.6.3"})
        elif self.path == "/api/tags":
            self._json(200, {"models": [_model(name) for name in self.double.models]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        name = body.get("model", "")
        if self.path not in ("/api/show", "/api/pull", "/api/chat"):
            self._json(404, {"error": "not found"})
        elif self.path == "/api/pull" and name in self.double.library:
            self._pull(body.get("stream", True))
            self.double.models[name] = self.double.library.pop(name)
            self.double.pulls.append(name)
        elif name not in self.double.models:
            self._json(404, {"error": f"model '{name}' not found, try pulling it first"})
        elif self.path == "/api/show":
            self._json(200, {**_model(name), "capabilities": ["completion", "tools"]})
        elif self.path == "/api/pull":
            self._pull(body.get("stream", True))
        else:
            self.double.chats.append(body)
            self._chat(body)

    def _pull(self, stream: bool) -> None:
        parts: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        for completed in (0, SIZE // 2, SIZE):
            parts.append(
                {
                    "status": f"pulling {DIGEST[7:19]}",
                    "digest": DIGEST,
                    "total": SIZE,
                    "completed": completed,
                }
            )
        parts += [{"status": s} for s in ("verifying sha256 digest", "writing manifest")]
        parts.append({"status": "success"})
        if stream:
            self._lines(iter(parts))
        else:
            self._json(200, parts[-1])

    def _chat(self, body: dict[str, Any]) -> None:
        request = _to_openai(body, self.double.models[body["model"]])
        lines = _chat_lines(self.double.upstream, body["model"], request)
        if body.get("stream", True):
            self._lines(lines)
            return
        content, last = "", {}
        calls: list[dict[str, Any]] = []
        for last in lines:
            content += last["message"].get("content", "")
            calls += last["message"].get("tool_calls", [])
        last["message"] = {"role": "assistant", "content": content, "tool_calls": calls or None}
        self._json(200, last)

    def _lines(self, lines: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (its timeout): stop generating
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    def _json(self, status: int, value: Any) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _model(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00Z",
        "size": SIZE,
        "digest": DIGEST[7:],
        "details": {"format": "gguf", "family": "llama", "parameter_size": "135M"},
    }


def _to_openai(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An Ollama chat request as llama.cpp's chat completions take it."""
    messages: list[dict[str, Any]] = []
    ids: list[str] = []  # tool calls not answered yet, oldest first
    for m in body.get("messages", []):
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                ids.append(f"call_{len(messages)}_{len(calls)}")
                function = c["function"]
                calls.append(
                    {
                        "id": ids[-1],
                        "type": "function",
                        "function": {
                            "name": function["name"],
                            "arguments": json.dumps(function["arguments"]),
                        },
                    }
                )
            messages.append(
                {"role": "assistant", "content": m.get("content", ""), "tool_calls": calls}
            )
        elif m["role"] == "tool":
            call_id = ids.pop(0) if ids else "call_0"
            messages.append({"role": "tool", "tool_call_id": call_id, "content": m["content"]})
        else:
            messages.append({"role": m["role"], "content": m.get("content", "")})
    options = body.get("options") or {}
    request: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for ours, theirs in (
        ("temperature", "temperature"),
        ("num_predict", "max_tokens"),
        ("seed", "seed"),
        ("stop", "stop"),
    ):
        if ours in options:
            request[theirs] = options[ours]
    fmt = body.get("format")
    if isinstance(fmt, dict):
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": fmt},
        }
    elif fmt == "json":
        request["response_format"] = {"type": "json_object"}
    if body.get("tools"):
        request["tools"] = body["tools"]
        if messages and messages[-1]["role"] == "user":
            # the template: a tool call is opened on a user turn whenever tools are offered
            messages.append({"role": "assistant", "content": PREFILL})
            request.update(tool_choice="required", stop=["</tool_call>"])
    return request


def _chat_lines(upstream: str, name: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """llama.cpp's SSE stream as Ollama's NDJSON lines."""
    start = time.monotonic_ns()
    calls: dict[int, dict[str, str]] = {}
    usage: dict[str, int] = {}
    finish = "stop"
    first = 0

    def line(**fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return {"model": name, "created_at": now, **fields}

    with httpx.stream(
        "POST",
        f"{upstream}/v1/chat/completions",
        json=request,
        timeout=httpx.Timeout(600, connect=5),
    ) as response:
        if response.status_code != 200:
            response.read()
            yield {"error": f"llama.cpp: HTTP {response.status_code}: {response.text[:500]}"}
            return
        for raw in response.iter_lines():
            if not raw.startswith("data: ") or raw == "data: [DONE]":
                continue
            chunk = json.loads(raw[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta", {})
                for part in delta.get("tool_calls") or []:
                    call = calls.setdefault(part["index"], {"name": "", "arguments": ""})
                    function = part.get("function", {})
                    call["name"] += function.get("name") or ""
                    call["arguments"] += function.get("arguments") or ""
                if delta.get("content"):
                    first = first or time.monotonic_ns()
                    yield line(
                        message={"role": "assistant", "content": delta["content"]}, done=False
                    )
    if calls:
        tool_calls = [
            {"function": {"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")}}
            for _, c in sorted(calls.items())
        ]
        yield line(
            message={"role": "assistant", "content": "", "tool_calls": tool_calls}, done=False
        )
    end = time.monotonic_ns()
    first = first or end
    yield line(
        message={"role": "assistant", "content": ""},
        done=True,
        done_reason="length" if finish == "length" else "stop",
        total_duration=end - start,
        load_duration=0,
        prompt_eval_count=usage.get("prompt_tokens", 0),
        prompt_eval_duration=first - start,
        eval_count=usage.get("completion_tokens", 0),
        eval_duration=end - first,
    )
