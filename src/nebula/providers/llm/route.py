"""A model name to the server that answers it, by prefix: `ollama:NAME` → the `ollama`
endpoint (the default local host when none is configured), `P:NAME` → endpoint P, a bare name
or `openai:NAME` → the `openai` endpoint."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from nebula.errors import ProviderError
from nebula.providers.llm.base import ChatModel, Endpoint
from nebula.providers.llm.ollama_chat import OllamaModel
from nebula.providers.llm.openai_chat import OpenAIModel

DEFAULT_OLLAMA = Endpoint("ollama", "ollama", "http://127.0.0.1:11434")
STATUS_TIMEOUT = 5.0


def open_model(model: str, endpoints: Mapping[str, Endpoint], timeout: float) -> ChatModel:
    """The model `model` names, on its server; ProviderError when no endpoint serves it."""
    return Models(endpoints, timeout).open(model)


class Models:
    """The models of a set of endpoints, for a caller that opens many: each endpoint's client
    is made once, on first use, and shared by every model opened on it (making one, its TLS
    context above all, costs far more than the work of a turn)."""

    def __init__(self, endpoints: Mapping[str, Endpoint], timeout: float) -> None:
        self.endpoints = dict(endpoints)
        self.timeout = timeout
        self._first: dict[str, OpenAIModel | OllamaModel] = {}  # endpoint name -> its client's
        self._lock = threading.Lock()

    def open(self, model: str) -> ChatModel:
        """The model `model` names, on its server; ProviderError when no endpoint serves it."""
        prefix, colon, name = model.partition(":")
        if not colon:
            prefix, name = "openai", model
        if prefix == "anthropic":
            raise ProviderError(
                model, "Anthropic is not available in this version", temporary=False
            )
        endpoint = self.endpoints.get(prefix) or (DEFAULT_OLLAMA if prefix == "ollama" else None)
        if endpoint is None:
            known = ", ".join(sorted({*self.endpoints, "ollama"}))
            raise ProviderError(
                model,
                f"no model provider {prefix!r} in nebula.yaml's ai section (known: {known})",
                temporary=False,
            )
        with self._lock:
            first = self._first.get(endpoint.name)
            if first is None:
                first = self._first[endpoint.name] = _model(endpoint, name, self.timeout)
        return first if first.model == name else first.named(name)


def provider_status(
    endpoints: Mapping[str, Endpoint], timeout: float = STATUS_TIMEOUT
) -> list[dict[str, Any]]:
    """Each endpoint's reachability and models, one request each."""
    status = []
    for endpoint in endpoints.values():
        row: dict[str, Any] = {"name": endpoint.name, "kind": endpoint.kind, "url": endpoint.url}
        try:
            row.update(reachable=True, models=_model(endpoint, "", timeout).models(), error=None)
        except ProviderError as e:
            row.update(reachable=False, models=[], error=e.cause)
        status.append(row)
    return status


def _model(endpoint: Endpoint, name: str, timeout: float) -> OpenAIModel | OllamaModel:
    if endpoint.kind == "ollama":
        return OllamaModel(endpoint, name, timeout)
    return OpenAIModel(endpoint, name, timeout)
