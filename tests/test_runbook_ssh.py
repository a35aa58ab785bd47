"""Runbooks' `ssh` action against a real OpenSSH server: a runbook of the config repo, run by
nebulad's remediation, logs in to a node of `nebula.yaml` by key and runs a command; a host key
that is not known (or has changed) is refused before anything runs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.providers.docker import DockerProvider
from nebula.remediation.service import Remediation
from nebula.store import Store
from servers import SshdServer, sshd_server

RUNBOOK = """\
name: on-the-node
trigger: {{type: manual}}
steps:
  - name: Run it
    action: ssh
    params: {{node: lab, command: {command}, timeout: {timeout}}}
"""


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdServer]:
    with sshd_server() as server:
        yield server


def run_on_node(
    tmp_path: Path,
    sshd: SshdServer,
    command: str,
    *,
    known_hosts: Path | None = None,
    key_file: Path | None = None,
    agent: bool = False,
    timeout: str = "30s",
) -> tuple[str, dict[str, Any]]:
    """Run `command` on the node through a repo runbook's ssh step (logging in with `key_file`,
    by default the server's client key, or with the ssh agent's keys): how the run ended and
    the step's recorded state."""
    login = "" if agent else f", key_file: {key_file or sshd.client_key}"
    repo = tmp_path / "repo"
    (repo / "runbooks").mkdir(parents=True)
    (repo / "nebula.yaml").write_text(
        "nodes:\n"
        "  - name: lab\n"
        "    address: 127.0.0.1\n"
        f"    ssh: {{user: {sshd.user}, port: {sshd.port}, known_hosts: "
        f"{known_hosts or sshd.known_hosts}{login}}}\n"
    )
    (repo / "runbooks" / "node.yml").write_text(
        RUNBOOK.format(command=f"'{command}'", timeout=timeout)
    )
    desired = load_desired(repo)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    store.replace_runbooks([r.record for r in desired.runbooks])
    remediation = Remediation(
        store, DockerProvider("unix:///nonexistent.sock"), lambda *a, **k: None
    )
    try:
        remediation.configure(desired, secret=lambda name: "")
        finished = remediation.run("on-the-node", {}, "tester")
        (execution,) = store.executions(runbook="on-the-node")
        return finished["status"], execution.step_states["run_it"]
    finally:
        remediation.close()


def fingerprint(public_key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (as `ssh-keygen -lf` prints it)."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def new_key(path: Path, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "", "-f", str(path)],
        check=True,
    )
    return path


def test_a_command_runs_on_the_node_by_key_and_its_output_is_the_steps(
    tmp_path: Path, sshd: SshdServer
) -> None:
    status, step = run_on_node(tmp_path, sshd, "echo hi; hostname")

    assert status == "succeeded"
    assert step["status"] == "ok"
    assert step["output"] == f"hi\n{socket.gethostname()}"
    assert step["outputs"] == {"exit_code": 0}


def test_a_command_that_exits_non_zero_fails_its_step_with_what_it_printed(
    tmp_path: Path, sshd: SshdServer
) -> None:
    status, step = run_on_node(tmp_path, sshd, "echo disk full >&2; exit 3")

    assert status == "failed"
    assert step["status"] == "failed"
    assert step["error"] == "disk full"
    assert step["outputs"] == {"exit_code": 3}


def test_without_a_key_file_the_ssh_agents_keys_log_in(
    tmp_path: Path, sshd: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL
    )
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
        while not agent_socket.exists():
            assert agent.poll() is None, "ssh-agent exited"
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True)

        status, step = run_on_node(tmp_path, sshd, "echo by agent", agent=True)
    finally:
        agent.terminate()
        agent.wait()

    assert status == "succeeded"
    assert step["output"] == "by agent"


def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_nothing_runs(
    tmp_path: Path, sshd: SshdServer
) -> None:
    marker = tmp_path / "ran"
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    status, step = run_on_node(tmp_path, sshd, f"touch {marker}", known_hosts=empty)

    assert status == "failed"
    assert fingerprint(sshd.host_key) in step["error"]
    assert f"is unknown: it is not in {empty}" in step["error"]
    assert "ssh-keyscan" in step["error"]  # what to do
    assert not marker.exists()


def test_a_changed_host_key_is_refused_and_nothing_runs(tmp_path: Path, sshd: SshdServer) -> None:
    marker = tmp_path / "ran"
    other = new_key(tmp_path / "other").with_suffix(".pub").read_text().strip()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")

    status, step = run_on_node(tmp_path, sshd, f"touch {marker}", known_hosts=known_hosts)

    assert status == "failed"
    assert f"{fingerprint(sshd.host_key)} is not the one {known_hosts} holds" in step["error"]
    assert fingerprint(other) in step["error"]
    assert not marker.exists()


def test_a_key_the_node_does_not_accept_is_refused_naming_the_key_file(
    tmp_path: Path, sshd: SshdServer
) -> None:
    stranger = new_key(tmp_path / "stranger")

    status, step = run_on_node(tmp_path, sshd, "true", key_file=stranger)

    assert status == "failed"
    assert f"login as {sshd.user} refused with key_file {stranger}" in step["error"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("missing", "No such file or directory"),
        ("client.pub", "not a private key"),
        ("encrypted", "it is encrypted: add it to the ssh agent"),
    ],
)
def test_a_key_file_that_cannot_be_used_is_named_with_why(
    tmp_path: Path, sshd: SshdServer, key: str, why: str
) -> None:
    key_file = {
        "missing": tmp_path / "missing",
        "client.pub": sshd.client_key.with_suffix(".pub"),
        "encrypted": new_key(tmp_path / "encrypted", "passphrase"),
    }[key]

    status, step = run_on_node(tmp_path, sshd, "true", key_file=key_file)

    assert status == "failed"
    assert f"key_file {key_file}: {why}" in step["error"]


def test_a_command_that_outlasts_its_timeout_fails_its_step(
    tmp_path: Path, sshd: SshdServer
) -> None:
    pid_file = tmp_path / "pid"
    command = f"echo $$ > {pid_file}; echo started; exec sleep 60"
    try:
        status, step = run_on_node(tmp_path, sshd, command, timeout="5s")
    finally:
        if pid_file.exists():  # the command is left to the node: end it here
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)

    assert status == "failed"
    assert step["error"].endswith("timed out after 5s; it printed: started")


def test_a_relative_key_file_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "nebula.yaml").write_text(
        "nodes:\n  - name: lab\n    address: 127.0.0.1\n    ssh: {key_file: keys/id}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)

    assert "nebula.yaml:4" in str(caught.value)
    assert "'keys/id' is relative: give an absolute path or one under ~" in str(caught.value)
