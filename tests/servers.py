"""Real servers for the test suite: a private Docker Engine, a throwaway PostgreSQL cluster and
the busybox test image.

Plain context managers; `conftest.py` turns them into fixtures. Nothing is mocked: each server is
the Debian binary, listening on a unix socket in a temp dir or on loopback, and torn down with
everything the tests left behind. A missing binary skips the tests that need it, with the install
command in the reason, except when services are required (`CI=true` or
`NEBULA_REQUIRE_SERVICES=1`): then it fails, so CI can never go green by skipping.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import docker
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

MANAGED_LABEL = "io.nebula.managed"
"""Label Nebula puts on everything it creates."""
TEST_LABEL = "io.nebula.test"
"""Label for what tests create directly; both labels are swept at teardown."""
TEST_IMAGE = "nebula-test/busybox:1"
DOCKER_API_VERSION = "1.41"
IMAGE_DIR = Path(__file__).parent / "image"

# Server binaries live in sbin dirs that a non-login PATH may lack.
_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
_APT = "apt-get install -y --no-install-recommends"


def services_required() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("NEBULA_REQUIRE_SERVICES") == "1"
    )


def unavailable(reason: str) -> NoReturn:
    if services_required():
        pytest.fail(f"{reason} (required: CI=true or NEBULA_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def _which(binary: str, package: str) -> str:
    path = shutil.which(binary, path=_PATH)
    if path is None:
        unavailable(f"{binary} not found; install it with: {_APT} {package}")
    return path


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _remove_tree(root: Path) -> None:
    """Delete a server's temp dir, unless something is still mounted inside it."""
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(f" {root}/" in line for line in mounts):
        return
    shutil.rmtree(root, ignore_errors=True)


# -- Docker Engine ---------------------------------------------------------------------------


@contextlib.contextmanager
def docker_daemon() -> Iterator[str]:
    """Yield the `unix://` URL of a Docker Engine for this session.

    `NEBULA_TEST_DOCKER_HOST` names an existing daemon; otherwise a private dockerd is started
    (own socket, data-root and exec-root; no default bridge; it leaves iptables alone). At the end
    every container, network and volume the tests left is removed, then the private daemon stops.
    """
    external = os.environ.get("NEBULA_TEST_DOCKER_HOST")
    if external:
        with _swept(external, everything=False), _forward_between_bridges():
            yield external
        return
    dockerd = _which("dockerd", "docker.io")
    if os.geteuid() != 0:
        unavailable("a private dockerd needs root; run as root or set NEBULA_TEST_DOCKER_HOST")
    # A short root: the socket paths below it must stay under the 108-byte unix limit.
    short = len(tempfile.gettempdir()) <= 40
    root = Path(tempfile.mkdtemp(prefix="nebula-dockerd-", dir=None if short else "/tmp"))
    (root / "daemon.json").write_text("{}")  # ignore the host's /etc/docker/daemon.json
    url = f"unix://{root}/docker.sock"
    log = root / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            dockerd_command(dockerd, url, root),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": _PATH},
        )
    try:
        _wait_for_docker(url, proc, log)
        with _swept(url, everything=True), _forward_between_bridges():
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _remove_tree(root)


def dockerd_command(dockerd: str, url: str, root: Path) -> list[str]:
    """A private dockerd on `url`, all its state under `root`, leaving the host's network alone."""
    return [
        dockerd,
        f"--host={url}",
        f"--config-file={root}/daemon.json",
        f"--data-root={root}/data",
        f"--exec-root={root}/x",
        f"--pidfile={root}/docker.pid",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--ip6tables=false",
    ]


def _wait_for_docker(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    client = docker.DockerClient(base_url=url, version=DOCKER_API_VERSION)
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{_tail(log)}")
            try:
                client.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd not ready after 30 s:\n{_tail(log)}") from None
                time.sleep(0.1)
    finally:
        client.close()


@contextlib.contextmanager
def _swept(url: str, *, everything: bool) -> Iterator[None]:
    """On exit, remove what the tests left: all of it on a private daemon, else labelled things.

    Networks must go before a private dockerd stops: it leaves their br-* bridges behind.
    """
    try:
        yield
    finally:
        client = docker.DockerClient(base_url=url, version=DOCKER_API_VERSION)
        try:
            for filters in (
                [{}] if everything else [{"label": MANAGED_LABEL}, {"label": TEST_LABEL}]
            ):
                for container in client.containers.list(all=True, sparse=True, filters=filters):
                    container.remove(force=True, v=True)
                for network in client.networks.list(filters=filters):
                    if network.name not in {"bridge", "host", "none"}:
                        network.remove()
                for volume in client.volumes.list(filters=filters):
                    volume.remove(force=True)
        finally:
            client.close()


@contextlib.contextmanager
def _forward_between_bridges() -> Iterator[None]:
    """Let containers on one user-defined network reach each other.

    Beside a daemon that set the FORWARD policy to DROP, traffic between containers on our
    bridges is silently dropped, since our daemon runs without iptables. One ACCEPT rule for
    br-* to br-* fixes it for the session.
    """
    iptables = shutil.which("iptables", path=_PATH)
    if iptables is None or os.geteuid() != 0 or not _forward_policy_is_drop(iptables):
        yield
        return
    rule = ["FORWARD", "-i", "br-+", "-o", "br-+", "-j", "ACCEPT"]
    subprocess.run([iptables, "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run([iptables, "-D", *rule], check=False)


def _forward_policy_is_drop(iptables: str) -> bool:
    rules = subprocess.run(
        [iptables, "-S", "FORWARD"], check=False, capture_output=True, text=True
    ).stdout
    return "-P FORWARD DROP" in rules.splitlines()


def build_test_image(url: str) -> str:
    """Build `TEST_IMAGE` FROM scratch with the host's static busybox; return its tag."""
    busybox = _which("busybox", "busybox-static")
    if not _is_static_elf(busybox):
        unavailable(f"{busybox} is dynamically linked; install it with: {_APT} busybox-static")
    client = docker.DockerClient(base_url=url, version=DOCKER_API_VERSION)
    try:
        with tempfile.TemporaryDirectory(prefix="nebula-image-") as tmp:
            context = Path(tmp)
            shutil.copy(IMAGE_DIR / "Dockerfile", context / "Dockerfile")
            shutil.copytree(IMAGE_DIR / "www", context / "www")
            shutil.copy(busybox, context / "busybox")
            client.images.build(path=str(context), tag=TEST_IMAGE, rm=True, forcerm=True)
    finally:
        client.close()
    return TEST_IMAGE


def _is_static_elf(path: str) -> bool:
    """True when a 64-bit ELF has no PT_INTERP header, so it runs without a dynamic loader."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        order = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(order + "Q", header, 32)
        entsize, count = struct.unpack_from(order + "HH", header, 54)
        f.seek(phoff)
        table = f.read(entsize * count)
    pt_interp = 3
    return all(
        struct.unpack_from(order + "I", table, i * entsize)[0] != pt_interp for i in range(count)
    )


# -- PostgreSQL ------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield the SQLAlchemy URL of the `postgres` database of a throwaway cluster.

    initdb and the server run as the `postgres` user when we are root (initdb refuses root),
    with fsync off, listening on a random free port of 127.0.0.1.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        unavailable(
            f"initdb not found under /usr/lib/postgresql; install it with: {_APT} postgresql"
        )
    bindir = Path(candidates[-1]).parent
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        setpriv = _which("setpriv", "util-linux")
        as_postgres = [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups"]
    # Not under pytest's basetemp: its parents are private to root, the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="nebula-pg-"))
    (root / "sock").mkdir()
    if as_postgres:
        for path in (root, root / "sock"):
            shutil.chown(path, "postgres", "postgres")
    data, log = root / "data", root / "server.log"
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        _run([*as_postgres, *initdb, "-E", "UTF8", "--locale=C.UTF-8", "-N"])
        port = _start_postgres(as_postgres, bindir, data, root / "sock", log)
    except BaseException:
        _remove_tree(root)
        raise
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        _remove_tree(root)


def _start_postgres(
    as_postgres: list[str], bindir: Path, data: Path, sockdir: Path, log: Path
) -> int:
    """Start the server on a free port, retrying if another process takes the port first."""
    for _ in range(3):
        port = _free_port()
        options = (
            f"-k {sockdir} -p {port} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30"]
        result = subprocess.run(
            [*as_postgres, *start, "-o", options, "start"],
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return port
    raise RuntimeError(f"PostgreSQL did not start:\n{result.stdout}{result.stderr}\n{_tail(log)}")


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the server of `server_url`; yield its URL; drop it after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def http_get(url: str, *, timeout: float = 10.0) -> tuple[int, str]:
    """GET `url` until it answers (a fresh container needs a moment); return status and body."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=2.0)
            return response.status_code, response.text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def labels(**extra: str) -> dict[str, str]:
    """Labels for a Docker object a test creates, so the session sweep removes it."""
    return {TEST_LABEL: "true", **extra}
