"""Ollama models the agents need, pulled by nebulad in the background.

At each good commit nebulad names the Ollama models its agents use; those the Ollama server
lacks are pulled through its `/api/pull`, one thread per model, with progress published as
`ai_model` events (model, state, percent) and logged every tenth. Each model's state is
present, pulling (with its percent), missing (`ai.ollama.pull: false`) or failed (with the
reason); the states are kept in the store's settings too (`engine.queries.ai_models`), so
`nebula status` shows them without asking nebulad.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from nebula.engine.queries import AI_MODELS
from nebula.errors import NebulaError

if TYPE_CHECKING:
    from nebula.providers.llm import Endpoint, OllamaModel
    from nebula.store import Store

log = logging.getLogger("nebulad.ai")
PULL_TIMEOUT = 3600.0  # seconds a pull's stream may stay silent (a big layer on a slow line)


def tagged(model: str) -> str:
    """`llama3.2` as Ollama lists it: `llama3.2:latest`."""
    return model if ":" in model else f"{model}:latest"


class ModelPulls:
    def __init__(self, store: Store, publish: Callable[..., None]) -> None:
        self.store = store
        self.publish = publish
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, Any]] = {}  # model -> {model, state, percent, error}
        self._pulling: set[str] = set()

    def reconcile(self, models: Iterable[str], endpoint: Endpoint, *, pull: bool) -> None:
        """Check (in the background) that the Ollama server at `endpoint` holds `models`, and
        with `pull` pull those it lacks."""
        wanted = sorted(set(models))
        with self._lock:
            self._states = {m: s for m, s in self._states.items() if m in wanted}
        self._save()
        if wanted:
            threading.Thread(
                target=self._check, args=(wanted, endpoint, pull), name="ai-models", daemon=True
            ).start()

    def states(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for _, s in sorted(self._states.items())]

    def _check(self, wanted: list[str], endpoint: Endpoint, pull: bool) -> None:
        from nebula.providers.llm import OllamaModel

        client = OllamaModel(endpoint, "", PULL_TIMEOUT)
        try:
            present = {tagged(m) for m in client.models()}
        except NebulaError as exc:
            for model in wanted:
                self._set(model, "failed", error=f"Ollama cannot be asked: {exc}")
            return
        for model in wanted:
            if tagged(model) in present:
                self._set(model, "present")
            elif not pull:
                self._set(
                    model, "missing", error="not on the Ollama server (ai.ollama.pull is off)"
                )
            else:
                with self._lock:
                    if model in self._pulling:
                        continue
                    self._pulling.add(model)
                threading.Thread(
                    target=self._pull, args=(client, model), name=f"pull {model}", daemon=True
                ).start()

    def _pull(self, client: OllamaModel, model: str) -> None:
        """Pull `model` through `client`, reporting its progress."""
        shown = -1
        log.info("pulling Ollama model %s", model)
        self._set(model, "pulling", percent=0)

        def progress(status: str, completed: int | None, total: int | None) -> None:
            nonlocal shown
            if not total or completed is None:
                return
            percent = min(100, completed * 100 // total)
            if percent != shown:
                shown = percent
                self._set(model, "pulling", percent=percent)
                if percent % 10 == 0:
                    log.info("pulling Ollama model %s: %d%% (%s)", model, percent, status)

        try:
            client.pull(model, progress)
        except NebulaError as exc:
            log.warning("pulling Ollama model %s failed: %s", model, exc)
            self._set(model, "failed", error=str(exc))
        else:
            log.info("pulled Ollama model %s", model)
            self._set(model, "present")
        finally:
            with self._lock:
                self._pulling.discard(model)

    def _set(self, model: str, state: str, *, percent: int | None = None, error: str = "") -> None:
        entry = {"model": model, "state": state, "percent": percent, "error": error}
        with self._lock:
            self._states[model] = entry
        self._save()
        self.publish("ai_model", **entry)

    def _save(self) -> None:
        try:
            self.store.set_setting(AI_MODELS, json.dumps(self.states()))
        except NebulaError as exc:  # the state is still in memory and on the API
            log.warning("could not save the Ollama models' state: %s", exc)
