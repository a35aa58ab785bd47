"""`nebula node add` against a real sshd on this machine: the bootstrap installs Nebula in a
venv, writes the node's settings and service token, starts nebulad's unit and waits until the
node heartbeats into the shared PostgreSQL, as the operator's real nebulad shows it. A wrong host
key changes nothing; a unit that cannot start is undone, leaving the host as it was.

systemd cannot run here (it is not PID 1), so the sshd's sessions find `tests/standins/systemctl`
first on their PATH; everything else is real. The node installs under a folder (`--root`)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.bootstrap import build_wheel
from servers import SshdServer, docker_sshd_server

STANDINS = Path(__file__).parent / "standins"


@pytest.fixture
def host(tmp_path: Path, docker_host: str) -> Iterator[tuple[SshdServer, Path, dict[str, str]]]:
    """The sshd, the folder the node installs under, and the stand-in systemctl's settings."""
    root = Path(tempfile.mkdtemp(prefix="nbn-", dir="/tmp"))  # short: nebulad's socket is in it
    env = {
        "SYSTEMCTL_UNIT_DIR": str(root / "etc" / "systemd" / "system"),
        "SYSTEMCTL_STATE_DIR": str(tmp_path / "systemd"),
    }
    with docker_sshd_server(docker_host, (str(STANDINS),), env) as sshd:
        yield sshd, root, env
    subprocess.run(
        [str(STANDINS / "systemctl"), "disable", "--now", "nebulad.service"],
        env={**os.environ, **env},
        check=False,
    )
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def operator(tmp_path: Path, docker_host: str, pg_url: str) -> Iterator[tuple[Path, str, Path]]:
    """The operator's nebulad (node a) on the shared database: its socket, the database URL
    and the config repo, whose nebula.yaml lists nodes a and b."""
    repo = tmp_path / "homelab"
    repo.mkdir()
    (repo / "nebula.yaml").write_text(
        "nodes:\n  - {name: a, address: 127.0.0.1}\n  - {name: b, address: 127.0.0.1}\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "two nodes"], check=True)
    with servers.fresh_database(pg_url) as db:
        data = tmp_path / "operator"
        data.mkdir(mode=0o700)
        args = ("--source", str(repo), "--node", "a", "--database-url", db)
        args += ("--docker-host", docker_host, "--poll-interval", "1h")
        with servers.nebulad(*args, data=data) as socket:
            wait_for(lambda: "b" in {n["name"] for n in nodes(socket)}, "the operator's sync")
            yield socket, db, repo


def nodes(socket: Path) -> list[dict[str, object]]:
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, base_url="http://nebulad/api/v1") as client:
        found: list[dict[str, object]] = client.get("/nodes").json()["nodes"]
        return found


def service_tokens(socket: Path) -> list[dict[str, object]]:
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, base_url="http://nebulad/api/v1") as client:
        keys: list[dict[str, object]] = client.get("/apikeys").json()["keys"]
        return [k for k in keys if k["kind"] == "service" and k["name"] == "b"]


def wait_for(done: object, what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited 60 s for {what}"
        time.sleep(0.5)


def node_add(
    sshd: SshdServer, root: Path, socket: Path, db: str, repo: Path, *extra: str
) -> tuple[int, str]:
    args = ["node", "add", "b", "--ssh", f"{sshd.user}@127.0.0.1:{sshd.port}"]
    args += ["--key-file", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts)]
    args += ["--source", str(repo), "--database-url", db, "--root", str(root)]
    args += ["--socket", str(socket), "--timeout", "60", *extra]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout + result.stderr


def test_node_add_installs_and_starts_a_node_that_heartbeats(
    host: tuple[SshdServer, Path, dict[str, str]], operator: tuple[Path, str, Path]
) -> None:
    sshd, root, _ = host
    socket, db, repo = operator

    code, output = node_add(sshd, root, socket, db, repo)

    assert code == 0, output
    assert "Node b is up." in output
    (b,) = [n for n in nodes(socket) if n["name"] == "b"]
    assert b["state"] == "up" and b["version"]
    settings = root / "etc" / "nebula" / "nebulad.env"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert "NEBULA_NODE=b\n" in settings.read_text()
    token = root / "etc" / "nebula" / "node.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().startswith("nbs_")
    assert token.read_text().strip() not in output  # the token is never shown
    unit = (root / "etc" / "systemd" / "system" / "nebulad.service").read_text()
    assert f"ExecStart={root}/opt/nebula/venv/bin/nebulad --data-dir {root}/var/lib/nebula" in unit
    assert [t["revoked_at"] for t in service_tokens(socket)] == [None]


def test_a_wrong_host_key_is_refused_and_the_host_is_untouched(
    tmp_path: Path, host: tuple[SshdServer, Path, dict[str, str]], operator: tuple[Path, str, Path]
) -> None:
    sshd, root, _ = host
    socket, db, repo = operator
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)

    code, output = node_add(sshd, root, socket, db, repo, "--host-key", "SHA256:" + "A" * 43)

    assert code == 1
    assert "is not the fingerprint given (SHA256:AAAA" in output
    assert list(root.iterdir()) == []
    assert service_tokens(socket) == []


def test_a_unit_that_cannot_start_is_undone_and_leaves_the_host_as_it_was(
    tmp_path: Path, host: tuple[SshdServer, Path, dict[str, str]], operator: tuple[Path, str, Path]
) -> None:
    sshd, root, _ = host
    socket, _, repo = operator
    wheel = build_wheel(tmp_path)
    nowhere = "postgresql+psycopg://nebula:s3cret-pw@127.0.0.1:1/nebula"  # nothing listens

    code, output = node_add(sshd, root, socket, nowhere, repo, "--wheel", str(wheel))

    assert code == 1
    assert "nebulad.service did not start" in output or "no heartbeat" in output
    assert "the host is as it was" in output
    assert "s3cret-pw" not in output
    assert list(root.iterdir()) == []
    assert "undone: service token" in output
    assert service_tokens(socket) == []  # revoked: no longer listed, no longer accepted
