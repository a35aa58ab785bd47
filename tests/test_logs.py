"""`nebula logs` against a real Docker Engine: an installation of two services that write known
lines to stdout and stderr, read back merged, tailed, as JSON, and followed live."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app

runner = CliRunner()

# web writes two lines and an error, then one more line once /go exists (the follow test
# creates it); worker writes two lines. Both then stay up.
PACKAGE = """compose:
  services:
    web:
      image: {image}
      command: [sh, -c, "echo web one; echo web two; echo web oops >&2;
        while [ ! -e /go ]; do sleep 1; done; echo web later; sleep 3600"]
    worker:
      image: {image}
      command: [sh, -c, "echo worker one; echo worker two; sleep 3600"]
"""


@pytest.fixture
def chatty(tmp_path: Path, docker_host: str, test_image: str) -> Iterator[str]:
    """The `chatty` installation applied; yields the Docker host."""
    repo = tmp_path / "repo"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("")
    (repo / "packages" / "chatty.yaml").write_text(PACKAGE.format(image=test_image))
    database = f"sqlite:///{tmp_path}/nebula.db"
    nebula("apply", str(repo), "--docker-host", docker_host, "--database-url", database)
    client = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:  # the lines are written by the time the containers run; wait for the last of each
        for container, last in (("chatty-web", b"web oops"), ("chatty-worker", b"worker two")):
            for chunk in client.logs(container, stream=True, follow=True):
                if last in chunk:
                    break
    finally:
        client.close()
    yield docker_host


def nebula(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_both_services_lines_with_their_prefixes(chatty: str) -> None:
    out = nebula("logs", "chatty", "--docker-host", chatty)
    lines = out.splitlines()
    # stdout in the order written; Docker stamps stderr on its own, so it may come first
    web = [line for line in lines if line.startswith("web")]
    assert [line for line in web if line != "web    | web oops"] == [
        "web    | web one",
        "web    | web two",
    ]
    assert "web    | web oops" in web
    assert [line for line in lines if line.startswith("worker")] == [
        "worker | worker one",
        "worker | worker two",
    ]
    assert len(lines) == 5
    only_worker = nebula("logs", "chatty", "worker", "--docker-host", chatty)
    assert only_worker.splitlines() == ["worker | worker one", "worker | worker two"]


def test_tail_since_and_timestamps(chatty: str) -> None:
    web, worker = sorted(
        nebula("logs", "chatty", "--tail", "1", "--docker-host", chatty).splitlines()
    )
    assert web in ("web    | web two", "web    | web oops")  # the later of the two streams
    assert worker == "worker | worker two"
    stamped = nebula("logs", "chatty", "worker", "-t", "--since", "1h", "--docker-host", chatty)
    stamp, _, rest = stamped.splitlines()[0].removeprefix("worker | ").partition(" ")
    assert stamp.startswith("20") and stamp.endswith("Z") and rest == "worker one"
    assert nebula("logs", "chatty", "--since", "2999-01-01", "--docker-host", chatty) == ""


def test_json_marks_stderr(chatty: str) -> None:
    out = nebula("logs", "chatty", "web", "--output", "json", "--docker-host", chatty)
    entries = [json.loads(line) for line in out.splitlines()]
    assert sorted((e["message"], e["stream"]) for e in entries) == [
        ("web one", "stdout"),
        ("web oops", "stderr"),
        ("web two", "stdout"),
    ]
    assert {e["service"] for e in entries} == {"web"}
    assert {e["container"] for e in entries} == {"chatty-web"}
    assert all(e["time"] for e in entries)


def test_unknown_installation_or_service_names_the_known_ones(chatty: str) -> None:
    out = nebula("logs", "chatty", "wbe", "--docker-host", chatty, code=2)
    assert "no service 'wbe' in installation chatty; did you mean 'web'?" in out
    assert "(known: web, worker)" in out
    out = nebula("logs", "chaty", "--docker-host", chatty, code=2)
    assert "no installation 'chaty' on Docker Engine" in out
    assert "did you mean 'chatty'? (known: chatty)" in out
    out = nebula("logs", "chatty", "--tail", "many", "--docker-host", chatty, code=2)
    assert "--tail 'many': give a number of lines, or all" in out


def test_colours_per_service_unless_no_color(chatty: str) -> None:
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    coloured = _cli("logs", "chatty", "--docker-host", chatty, env=env).stdout
    assert "\x1b[36mweb    | \x1b[0mweb one" in coloured  # cyan
    assert "\x1b[33mworker | \x1b[0mworker one" in coloured  # yellow
    plain = _cli("logs", "chatty", "--no-color", "--docker-host", chatty, env=env).stdout
    assert "\x1b[" not in plain and "web    | web one" in plain


def test_follow_shows_new_lines_until_ctrl_c(chatty: str) -> None:
    proc = subprocess.Popen(
        [*_COMMAND, "logs", "chatty", "-f", "--docker-host", chatty],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        _wait_for(lines, {"web    | web oops\n", "worker | worker two\n"})
        client = docker.DockerClient(base_url=chatty, version=servers.DOCKER_API_VERSION)
        try:
            assert client.containers.get("chatty-web").exec_run(["touch", "/go"]).exit_code == 0
        finally:
            client.close()
        _wait_for(lines, {"web    | web later\n"})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()


_COMMAND = [sys.executable, "-c", "from nebula.cli.entry import main; main()"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_COMMAND, *args], capture_output=True, text=True, env=env, check=True, timeout=120
    )


def _wait_for(lines: queue.Queue[str], expected: set[str]) -> None:
    """Read lines until every one of `expected` has been printed (a minute at most)."""
    missing, seen = set(expected), []
    while missing:
        try:
            seen.append(lines.get(timeout=60))
        except queue.Empty:
            pytest.fail(f"never printed {sorted(missing)}; printed {seen}")
        missing.discard(seen[-1])
