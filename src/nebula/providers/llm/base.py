"""One interface over the model clients: what the agent loop sends (OpenAI-shaped messages,
tools, a JSON schema) and what it gets back (a `Reply`), whichever server answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from nebula.errors import ProviderError

CONNECT_TIMEOUT = 5.0
"""Seconds to reach a model server: an address that does not answer fails fast."""


@dataclass(frozen=True)
class Endpoint:
    """A model server: `ollama` (the Ollama API) or `openai` (OpenAI or a compatible server
    such as llama.cpp, vLLM, LM Studio or LiteLLM; `url` is its base URL, `.../v1`)."""

    name: str
    kind: Literal["ollama", "openai"]
    url: str
    api_key: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for; `arguments` is a dict when the model wrote a JSON object,
    else its raw text (which the loop reports back as invalid)."""

    id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class Reply:
    """One model reply: its text, the tools it calls, its tokens and why it stopped."""

    content: str
    tool_calls: tuple[ToolCall, ...]
    prompt_tokens: int
    completion_tokens: int
    finish: str


class ChatModel(Protocol):
    """A model on one server. `messages` are OpenAI-shaped dicts (`role`, `content`; an
    assistant's `tool_calls` as `{"id", "name", "arguments"}`; a tool's result with
    `tool_call_id` and `name`). `chat` always streams, passing text to `on_delta` as it comes;
    `timeout` bounds the whole call (ProviderError when it is over)."""

    provider: str
    model: str

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
    ) -> Reply: ...

    def models(self) -> list[str]: ...


class Budget:
    """The time one call may take: the read timeout of each wait for the server, and a check
    between streamed chunks so a server that keeps talking is cut off too."""

    def __init__(self, resource: str, timeout: float) -> None:
        self.resource = resource
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        """Seconds left (at least a little, so a read can still report the end)."""
        return max(self.end - time.monotonic(), 0.01)

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise self.expired()

    def expired(self) -> ProviderError:
        return ProviderError(self.resource, f"no complete answer within {self.timeout:g} s")
