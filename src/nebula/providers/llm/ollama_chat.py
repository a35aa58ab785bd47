"""Ollama through the official `ollama` client: streamed chat (NDJSON) with tool calls and
structured output, the models a host has, and pulling a model with progress."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar, cast

import httpx
import ollama

from nebula.errors import ProviderError
from nebula.providers.llm.base import CONNECT_TIMEOUT, Budget, Endpoint, Reply, ToolCall

T = TypeVar("T")

Progress = Callable[[str, int | None, int | None], None]
"""A pull's progress: status, bytes completed, bytes in all (None until the server knows)."""


class OllamaModel:
    """A model on an Ollama host. Each call gets a client of its own read timeout over one
    shared connection pool (the client takes no timeout per request)."""

    def __init__(
        self,
        endpoint: Endpoint,
        model: str,
        timeout: float,
        transport: httpx.HTTPTransport | None = None,
    ) -> None:
        self.provider = endpoint.name
        self.model = model
        self.timeout = timeout
        self.url = endpoint.url
        self.resource = f"model ollama:{model} at {endpoint.url}"
        self._headers = (
            {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else None
        )
        self._endpoint = endpoint
        self._transport = transport or httpx.HTTPTransport()

    def named(self, model: str) -> OllamaModel:
        """The host's model `model`, over this one's connection pool."""
        return OllamaModel(self._endpoint, model, self.timeout, self._transport)

    def _client(self, timeout: float) -> ollama.Client:
        return ollama.Client(
            host=self.url,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            headers=self._headers,
            transport=self._transport,
        )

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str = "auto",  # Ollama has no such option: the model decides
        schema: dict[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        timeout: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Reply:
        budget = Budget(self.resource, self.timeout if timeout is None else timeout)
        options: dict[str, Any] = {"temperature": temperature}
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        content: list[str] = []
        calls: list[ToolCall] = []
        prompt_tokens = completion_tokens = 0
        finish = "stop"
        with (
            self._errors(budget),
            _closing(
                self._client(budget.left()).chat(
                    self.model,
                    messages=[_to_ollama(m) for m in messages],
                    tools=tools or None,
                    format=schema,
                    options=options,
                    stream=True,
                )
            ) as stream,
        ):
            for part in stream:
                budget.check()
                if part.message.content:
                    content.append(part.message.content)
                    if on_delta is not None:
                        on_delta(part.message.content)
                for call in part.message.tool_calls or ():
                    name, args = call.function.name, dict(call.function.arguments)
                    calls.append(ToolCall(f"call_{len(calls)}", name, args))
                if part.done:
                    prompt_tokens = part.prompt_eval_count or 0
                    completion_tokens = part.eval_count or 0
                    finish = part.done_reason or finish
        return Reply(
            "".join(content),
            tuple(calls),
            prompt_tokens,
            completion_tokens,
            "tool_calls" if calls else finish,
        )

    def models(self) -> list[str]:
        with self._errors(None):
            return sorted(m.model for m in self._client(self.timeout).list().models if m.model)

    def pull(self, model: str, progress: Progress) -> None:
        """Pull `model` onto the host (nothing to download when it has it already)."""
        resource = f"pull of ollama:{model} at {self.url}"
        with (
            self._errors(None, resource),
            _closing(self._client(self.timeout).pull(model, stream=True)) as parts,
        ):
            for part in parts:
                progress(part.status or "", part.completed, part.total)

    @contextlib.contextmanager
    def _errors(self, budget: Budget | None, resource: str | None = None) -> Iterator[None]:
        """The client's exceptions as ProviderError, with the server's own text."""
        resource = resource or self.resource
        try:
            yield
        except ollama.ResponseError as e:
            code = e.status_code
            raise ProviderError(
                resource,
                f"HTTP {code}: {e.error}" if code > 0 else e.error,
                temporary=code >= 500 or code in (-1, 429),
            ) from None
        except (ConnectionError, httpx.ConnectError) as e:
            raise ProviderError(resource, f"unreachable: {_reason(e)}") from None
        except httpx.TimeoutException:
            if budget is not None:
                raise budget.expired() from None
            raise ProviderError(resource, f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise ProviderError(resource, f"request failed: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    if isinstance(e, httpx.HTTPError):
        return str(e) or type(e).__name__
    return "the Ollama host does not answer on this address"


def _to_ollama(message: dict[str, Any]) -> dict[str, Any]:
    """Nebula's message shape as Ollama takes it: tool-call arguments as objects, a tool's
    result named by `tool_name`."""
    if message["role"] == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message.get("content") or "",
            "tool_calls": [
                {"function": {"name": c["name"], "arguments": _object(c["arguments"])}}
                for c in message["tool_calls"]
            ],
        }
    if message["role"] == "tool":
        return {"role": "tool", "content": message["content"], "tool_name": message["name"]}
    return {"role": message["role"], "content": message["content"]}


def _object(arguments: Any) -> dict[str, Any]:
    return arguments if isinstance(arguments, dict) else {"_raw": str(arguments)}


def _closing(parts: Iterator[T]) -> contextlib.closing[Generator[T, None, None]]:
    """The client's stream (a generator), closed (its response with it) when left early."""
    return contextlib.closing(cast(Generator[T, None, None], parts))
