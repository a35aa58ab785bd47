"""Contexts: `nebula context add|use|list|current|remove`, and commands speaking to the daemon
the context names, against two real nebulad processes, each following its own folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config dir, where contexts.yaml goes; no daemon chosen by the environment."""
    for name in ("NEBULA_DAEMON", "NEBULA_SOCKET", "NEBULA_CONTEXT", "NEBULA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "config" / "nebula"


@pytest.fixture
def daemons(tmp_path: Path, config_dir: Path) -> Iterator[dict[str, Path]]:
    """Two nebulad (a, b), each following a folder of its own: name → socket."""
    with contextlib.ExitStack() as stack:
        found = {}
        for name in ("a", "b"):
            repo = tmp_path / f"repo-{name}"
            repo.mkdir()
            (repo / "nebula.yaml").write_text("{}\n")
            data = tmp_path / f"d{name}"
            data.mkdir(mode=0o700)
            args = ("--source", str(repo), "--watch", "--docker-host", "unix:///nonexistent")
            found[name] = stack.enter_context(
                servers.nebulad(*args, "--poll-interval", "1h", data=data)
            )
        yield found


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def source(*args: str, env: dict[str, str] | None = None) -> str:
    """The folder the daemon a command reaches follows (its name: repo-a or repo-b)."""
    found = re.search(r"follows (\S+)", run(*args, "sync", "status", env=env))
    assert found is not None
    return Path(found[1]).name


def test_commands_speak_to_the_daemon_of_the_chosen_context(
    tmp_path: Path, config_dir: Path, daemons: dict[str, Path]
) -> None:
    assert "(current)" in run("context", "add", "a", "--socket", str(daemons["a"]))
    run("context", "add", "b", "--socket", str(daemons["b"]))

    assert source() == "repo-a"  # the first context added is the current one
    assert source("--context", "b") == "repo-b"
    assert source(env={"NEBULA_CONTEXT": "b"}) == "repo-b"
    assert "Current context: b" in run("context", "use", "b")
    assert source() == "repo-b"
    assert run("context", "current").strip() == f"b (socket {daemons['b']})"
    # --socket / NEBULA_SOCKET come before any context
    assert source(env={"NEBULA_SOCKET": str(daemons["a"])}) == "repo-a"

    listed = json.loads(run("context", "list", "--output", "json"))
    assert [(c["name"], c["current"]) for c in listed] == [("a", False), ("b", True)]
    assert "*  b" in run("context", "list")

    run("context", "remove", "b")
    out = run("sync", "status", code=1)  # no current context: the default socket
    assert f"no nebulad is running (socket {tmp_path / 'data'}" in out
    assert source("--context", "a") == "repo-a"


def test_a_url_context_reaches_its_tcp_api_and_keeps_no_token(config_dir: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    run("context", "add", "home", "--url", url, "--use")

    out = run("sync", "status", code=1, env={"NEBULA_TOKEN": "nbk_0123456789ab_secret"})
    assert f"no nebulad answers at {url}" in out

    file = config_dir / "contexts.yaml"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "nbk_" not in file.read_text()
    file.write_text(f"current: home\ncontexts:\n  - name: home\n    url: {url}\n    token: x\n")
    out = run("sync", "status", code=2)
    assert f"{file}:5:5: contexts[0].token: unknown field" in out


def test_an_unknown_context_is_named_with_the_known_ones(config_dir: Path) -> None:
    run("context", "add", "lab", "--socket", "/run/nebula/nebulad.sock")

    out = run("--context", "nas", "sync", "status", code=1)
    assert "no context 'nas'" in out and "(contexts: lab)" in out
    assert "no context 'nas'" in run("context", "use", "nas", code=1)
    out = run("context", "add", "both", "--socket", "/x.sock", "--url", "http://h:1", code=2)
    assert "either url" in out
    assert not os.path.exists(config_dir / "both")
