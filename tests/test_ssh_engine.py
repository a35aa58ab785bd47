"""A Docker Engine reached over SSH (`docker.host: ssh://user@host:port`): `nebula apply` runs the
installation on the engine behind a real sshd (Docker's own transport: `docker system
dial-stdio` on the host), with the node's host key verified; a wrong host key is refused."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.providers.docker import DockerProvider
from nebula.spec.config import NodeSsh
from servers import SshdServer, docker_sshd_server

PACKAGE = """\
compose:
  services:
    app:
      image: {image}
      init: true
      command: ["sh", "-c", "echo up; exec httpd -f -p 8080"]
      restart: unless-stopped
"""


@pytest.fixture(scope="module")
def sshd(docker_host: str) -> Iterator[SshdServer]:
    with docker_sshd_server(docker_host) as server:
        yield server


def write_repo(tmp_path: Path, sshd: SshdServer, image: str, known_hosts: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text(
        f"docker:\n  host: ssh://{sshd.user}@127.0.0.1:{sshd.port}\n"
        "nodes:\n"
        "  - name: lab\n"
        "    address: 127.0.0.1\n"
        f"    ssh: {{known_hosts: {known_hosts}, key_file: {sshd.client_key}}}\n"
    )
    (repo / "packages" / "web.yaml").write_text(PACKAGE.format(image=image))
    return repo


def apply(repo: Path, tmp_path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["apply", str(repo), "--yes", "--database-url", f"sqlite:///{tmp_path}/nebula.db"],
    )
    return result.exit_code, result.stdout + result.stderr


def fingerprint(public_key_line: str) -> str:
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def test_apply_runs_the_installation_on_the_engine_behind_ssh(
    tmp_path: Path, docker_host: str, test_image: str, sshd: SshdServer
) -> None:
    repo = write_repo(tmp_path, sshd, test_image, sshd.known_hosts)

    code, output = apply(repo, tmp_path)

    assert code == 0, output
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    (container,) = engine.containers(filters={"label": "io.nebula.installation=web"})
    assert container["Names"] == ["/web-app"] and container["State"] == "running"
    code, output = apply(repo, tmp_path)  # observed over ssh too: nothing left to do
    assert (code, "No changes." in output) == (0, True), output

    # reads and streams through the same transport: logs, and the events of a restart
    provider = DockerProvider(
        f"ssh://{sshd.user}@127.0.0.1:{sshd.port}",
        ssh=NodeSsh(known_hosts=str(sshd.known_hosts), key_file=str(sshd.client_key)),
    )
    try:
        assert [c.name for c in provider.observe().containers] == ["web-app"]
        assert "up" in provider.logs("web-app")
        seen: list[str] = []
        stream = provider.log_stream("web-app", follow=False, tail=10, since=None)
        seen += [line.message for line in stream]
        assert "up" in seen
        provider.restart_container("web-app")
        status = provider.wait_for(container["Id"], lambda s: s.state == "running", 30)
        assert status.state == "running"
    finally:
        provider.close()


def test_a_wrong_host_key_is_refused_and_nothing_is_created(
    tmp_path: Path, docker_host: str, test_image: str, sshd: SshdServer
) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known_hosts = tmp_path / "known_hosts"
    other_key = other.with_suffix(".pub").read_text().strip()
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other_key}\n")
    repo = write_repo(tmp_path, sshd, test_image, known_hosts)

    code, output = apply(repo, tmp_path)

    assert code == 1
    assert f"{fingerprint(sshd.host_key)} is not the one {known_hosts} holds" in output
    assert "refused" in output
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    assert engine.containers(all=True, filters={"label": "io.nebula.managed=true"}) == []


def test_an_unknown_host_key_is_refused_with_what_to_do(
    tmp_path: Path, docker_host: str, test_image: str, sshd: SshdServer
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    repo = write_repo(tmp_path, sshd, test_image, empty)

    code, output = apply(repo, tmp_path)

    assert code == 1
    assert f"{fingerprint(sshd.host_key)} is unknown: it is not in {empty}" in output
    assert f"ssh-keyscan -p {sshd.port} -t ed25519 127.0.0.1 >> {empty}" in output
