"""OpenAI and OpenAI-compatible servers (llama.cpp, vLLM, LM Studio, LiteLLM) through the
official `openai` client: streamed chat completions with usage, tool-call deltas assembled by
index, structured output through `response_format`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
from openai import Stream
from openai.types.chat import ChatCompletionChunk

from nebula.errors import ProviderError
from nebula.providers.llm.base import CONNECT_TIMEOUT, Budget, Endpoint, Reply, ToolCall


class OpenAIModel:
    """A model on an OpenAI-compatible server. Nothing is retried: the loop decides."""

    def __init__(
        self, endpoint: Endpoint, model: str, timeout: float, client: openai.OpenAI | None = None
    ) -> None:
        self.provider = endpoint.name
        self.model = model
        self.timeout = timeout
        self.resource = f"model {endpoint.name}:{model} at {endpoint.url}"
        self._endpoint = endpoint
        self._client = client or openai.OpenAI(
            base_url=endpoint.url,
            api_key=endpoint.api_key or "unused",  # local servers take any key
            timeout=openai.Timeout(timeout, connect=CONNECT_TIMEOUT),
            max_retries=0,
        )

    def named(self, model: str) -> OpenAIModel:
        """The server's model `model`, over this one's client (safe to share between threads)."""
        return OpenAIModel(self._endpoint, model, self.timeout, self._client)

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str = "auto",
        schema: dict[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        timeout: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Reply:
        budget = Budget(self.resource, self.timeout if timeout is None else timeout)
        extra: dict[str, Any] = {}
        if tools:
            extra.update(tools=tools, tool_choice=tool_choice)
        if schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema},
            }
        if max_tokens is not None:
            extra["max_tokens"] = max_tokens
        content: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = (0, 0)
        finish = ""
        try:
            # `extra` holds only what is set, which the typed overloads cannot follow
            create: Any = self._client.chat.completions.create
            stream: Stream[ChatCompletionChunk]
            with create(
                model=self.model,
                messages=[_to_openai(m) for m in messages],
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
                timeout=openai.Timeout(budget.left(), connect=CONNECT_TIMEOUT),
                **extra,
            ) as stream:
                for chunk in stream:
                    budget.check()
                    if chunk.usage is not None:
                        usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        if choice.delta.content:
                            content.append(choice.delta.content)
                            if on_delta is not None:
                                on_delta(choice.delta.content)
                        for part in choice.delta.tool_calls or ():
                            call = calls.setdefault(part.index, {"id": "", "name": "", "args": ""})
                            call["id"] = part.id or call["id"]
                            if part.function is not None:
                                call["name"] += part.function.name or ""
                                call["args"] += part.function.arguments or ""
        except openai.APITimeoutError:
            raise budget.expired() from None
        except openai.APIConnectionError as e:
            raise ProviderError(self.resource, f"unreachable: {e.__cause__ or e}") from None
        except openai.APIStatusError as e:
            raise status_error(self.resource, e) from None
        tool_calls = tuple(
            ToolCall(c["id"] or f"call_{i}", c["name"], _arguments(c["args"]))
            for i, c in sorted(calls.items())
        )
        return Reply("".join(content), tool_calls, usage[0], usage[1], finish or "stop")

    def models(self) -> list[str]:
        try:
            return sorted(m.id for m in self._client.models.list())
        except openai.APITimeoutError:
            raise ProviderError(self.resource, f"no answer within {self.timeout:g} s") from None
        except openai.APIConnectionError as e:
            raise ProviderError(self.resource, f"unreachable: {e.__cause__ or e}") from None
        except openai.APIStatusError as e:
            raise status_error(self.resource, e) from None


def status_error(resource: str, e: openai.APIStatusError) -> ProviderError:
    """The server's own error text with its HTTP status; 4xx but 429 will not pass by itself."""
    body = e.body
    if isinstance(body, dict):
        body = body.get("error", body)
    if isinstance(body, dict):
        body = body.get("message", body)
    text = str(body) if body else e.response.text[:500]
    code = e.status_code
    return ProviderError(resource, f"HTTP {code}: {text}", temporary=code >= 500 or code == 429)


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _to_openai(message: dict[str, Any]) -> dict[str, Any]:
    """Nebula's message shape (flat tool calls) as the chat completions API takes it."""
    if message["role"] == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message.get("content") or None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": _json(c["arguments"])},
                }
                for c in message["tool_calls"]
            ],
        }
    if message["role"] == "tool":
        return {
            "role": "tool",
            "tool_call_id": message["tool_call_id"],
            "content": message["content"],
        }
    return {"role": message["role"], "content": message["content"]}


def _json(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)
