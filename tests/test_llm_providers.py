"""The model providers against a real model (SmolLM2-135M on llama.cpp): the official `openai`
client directly, the official `ollama` client through the server speaking Ollama's protocol.
The model's wording varies with threads and versions: these tests assert structure."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import jsonschema
import pytest

from llm_servers import LlmServer
from nebula.errors import ProviderError
from nebula.providers.llm import Endpoint, OllamaModel, open_model, provider_status
from ollama_double import OllamaDouble

pytestmark = pytest.mark.timeout(120)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "status",
            "description": "The status of an installation",
            "parameters": {
                "type": "object",
                "properties": {"installation": {"type": "string", "enum": ["web", "db"]}},
                "required": ["installation"],
            },
        },
    }
]
ASK = [
    {"role": "system", "content": "You are a homelab's ops assistant."},
    {"role": "user", "content": "Is the web installation up?"},
]
VERDICT = {
    "type": "object",
    "properties": {
        "installation": {"enum": ["web", "db"]},
        "healthy": {"type": "boolean"},
    },
    "required": ["installation", "healthy"],
    "additionalProperties": False,
}


def endpoints(llm: LlmServer, ollama: OllamaDouble | None = None) -> dict[str, Endpoint]:
    found = {"local": Endpoint("local", "openai", llm.openai_url)}
    if ollama is not None:
        found["ollama"] = Endpoint("ollama", "ollama", ollama.url)
    return found


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("provider", ["local", "ollama"])
def test_a_reply_streams_and_counts_its_tokens(
    llm_server: LlmServer, ollama_server: OllamaDouble, provider: str
) -> None:
    model = open_model(f"{provider}:smollm2:135m", endpoints(llm_server, ollama_server), 60)
    deltas: list[str] = []
    reply = model.chat(ASK, max_tokens=24, temperature=0, on_delta=deltas.append)
    assert len(deltas) > 1  # streamed, not one block
    assert "".join(deltas) == reply.content and reply.content
    assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 24
    assert reply.tool_calls == ()


@pytest.mark.parametrize("provider", ["local", "ollama"])
def test_structured_output_follows_the_schema(
    llm_server: LlmServer, ollama_server: OllamaDouble, provider: str
) -> None:
    model = open_model(f"{provider}:smollm2:135m", endpoints(llm_server, ollama_server), 60)
    reply = model.chat(ASK, schema=VERDICT, max_tokens=60, temperature=0)
    jsonschema.validate(json.loads(reply.content), VERDICT)


def test_ollama_native_tool_call_has_object_arguments(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    model = open_model("ollama:smollm2:135m", endpoints(llm_server, ollama_server), 60)
    reply = model.chat(ASK, tools=TOOLS, max_tokens=60, temperature=0)
    assert reply.finish == "tool_calls"
    [call] = reply.tool_calls
    assert call.name == "status"
    assert call.arguments["installation"] in ("web", "db")
    # the tool's result goes back named, and the model answers in text
    answered = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [call.__dict__]},
        {"role": "tool", "tool_call_id": call.id, "name": "status", "content": "web: healthy"},
    ]
    after = model.chat(answered, tools=TOOLS, max_tokens=40, temperature=0)
    assert after.tool_calls == () and after.content
    sent = ollama_server.chats[-1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == call.arguments
    assert sent[3] == {"role": "tool", "content": "web: healthy", "tool_name": "status"}


def test_models_and_status_of_each_endpoint(
    llm_server: LlmServer, ollama_server: OllamaDouble, silent_port: int
) -> None:
    found = {
        **endpoints(llm_server, ollama_server),
        "gone": Endpoint("gone", "ollama", f"http://127.0.0.1:{closed_port()}"),
    }
    rows = {row["name"]: row for row in provider_status(found, timeout=2)}
    assert rows["local"]["reachable"] and rows["local"]["models"] == ["smollm2:135m"]
    assert rows["ollama"]["reachable"] and rows["ollama"]["models"] == ["smollm2:135m"]
    assert not rows["gone"]["reachable"] and "unreachable" in rows["gone"]["error"]


def test_pull_reports_progress_and_refuses_an_unknown_model(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    model = open_model("ollama:smollm2:135m", endpoints(llm_server, ollama_server), 30)
    assert isinstance(model, OllamaModel)
    seen: list[tuple[str, int | None, int | None]] = []
    model.pull("smollm2:135m", lambda *part: seen.append(part))
    assert seen[-1][0] == "success"
    assert any(total and completed == total for _, completed, total in seen)
    with pytest.raises(ProviderError, match="HTTP 404: model 'llama9' not found") as e:
        model.pull("llama9", lambda *part: None)
    assert not e.value.temporary


def test_an_unknown_model_is_the_servers_error(
    llm_server: LlmServer, ollama_server: OllamaDouble
) -> None:
    model = open_model("ollama:llama9", endpoints(llm_server, ollama_server), 30)
    with pytest.raises(ProviderError, match=r"ollama:llama9 .*HTTP 404: model 'llama9' not found"):
        model.chat(ASK)


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_a_closed_port_is_unreachable(kind: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}" + ("/v1" if kind == "openai" else "")
    model = open_model("p:m", {"p": Endpoint("p", kind, url)}, 60)  # type: ignore[arg-type]
    with pytest.raises(ProviderError, match=f"{url}: unreachable") as e:
        model.chat(ASK)
    assert e.value.temporary


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_a_server_that_never_answers_times_out(kind: str, silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}" + ("/v1" if kind == "openai" else "")
    model = open_model("p:m", {"p": Endpoint("p", kind, url)}, 60)  # type: ignore[arg-type]
    with pytest.raises(ProviderError, match="no complete answer within 1 s"):
        model.chat(ASK, timeout=1)


def test_routing_by_prefix() -> None:
    found = {"local": Endpoint("local", "openai", "http://127.0.0.1:9/v1")}
    assert open_model("local:qwen2.5:7b", found, 10).model == "qwen2.5:7b"
    assert open_model("ollama:llama3.2:3b", found, 10).model == "llama3.2:3b"  # default host
    with pytest.raises(ProviderError, match="Anthropic is not available"):
        open_model("anthropic:claude", found, 10)
    with pytest.raises(ProviderError, match=r"no model provider 'lcoal'.*known: local, ollama"):
        open_model("lcoal:qwen", found, 10)
    with pytest.raises(ProviderError, match="no model provider 'openai'"):
        open_model("gpt-4o", found, 10)
