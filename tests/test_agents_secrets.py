"""A vault secret that a tool's answer carries never reaches the model, nor the store: the AI
service nebulad runs masks what tools return with every secret of the vault.

Real parts throughout: the store and vault on SQLite, a web hook on loopback that answers with
the secret, SmolLM2-135M behind a server speaking Ollama's protocol (which keeps every request
body it receives: what the model was sent), the repo loaded by the real loader.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llm_servers import MODEL, LlmServer, llm_server
from nebula.ai.service import AI
from nebula.engine.load import load_desired
from nebula.secrets import open_vault
from nebula.stand_ins import MASK
from nebula.store import Store
from ollama_double import ollama_double

__all__ = ["llm_server"]  # the fixture

SECRET = f"pw-{uuid.uuid4().hex}"


class _Leaky(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "degraded", "dsn": f"postgres://app:{SECRET}@db/app"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def leaky_hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Leaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


def test_a_vault_secret_in_a_tool_result_never_reaches_the_model_or_the_store(
    tmp_path: Path, llm_server: LlmServer, leaky_hook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    database = tmp_path / "nebula.db"
    store = Store(f"sqlite:///{database}")
    vault = open_vault(store)
    vault.init()
    vault.set("db.password", SECRET)
    with ollama_double(llm_server.url, {MODEL: MODEL}) as ollama:
        repo = tmp_path / "repo"
        for path, text in {
            "nebula.yaml": f'ai:\n  ollama: {{host: "{ollama.url}"}}\n',
            "functions/health.yaml": "name: health\ndescription: The database's health\n"
            f"implementation: {leaky_hook}\nimplementation_type: http\n"
            "http: {method: GET}\n"
            "parameters: {type: object, properties: {}, additionalProperties: false}\n",
            "agents/checker.yaml": "name: checker\nsystemPrompt: You check the database.\n"
            f"model: ollama:{MODEL}\ntemperature: 0\ntools: [health]\ntoolChoice: required\n"
            "maxTurns: 2\ncontext: {maxTokens: 32}\n",
        }.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
        ai = AI(store, lambda *args, **data: None, {}, docker=lambda: None)  # no docker function
        ai.configure(load_desired(repo), vault.reveal)

        ran = ai.run("checker", "Is the database healthy?", "user:ada")

        assert ran.status == "completed", ran.reason
        [call] = [s for s in ai.execution(ran.execution_id).steps if s.kind == "tool_call"]
        assert call.detail["name"] == "health" and call.detail["ok"]
        sent = json.dumps(ollama.chats)
        results = [m for chat in ollama.chats for m in chat["messages"] if m["role"] == "tool"]
        assert results, "the tool's answer was never sent to the model"
        assert SECRET not in sent  # what the model was sent
        assert all(MASK in m["content"] and "postgres://app:" in m["content"] for m in results)
    store.close()
    assert SECRET.encode() not in database.read_bytes()  # nor what the store recorded
