"""Real servers for the test suite: a private Docker Engine, a throwaway PostgreSQL cluster, the
busybox test image, Caddy, Pebble, PowerDNS, Prometheus Alertmanager, an SMTP server and an
OpenSSH server.

Plain context managers; `conftest.py` turns them into fixtures. Nothing is mocked: each server is
the Debian binary, listening on a unix socket in a temp dir or on loopback, and torn down with
everything the tests left behind. A missing binary skips the tests that need it, with the install
command in the reason, except when services are required (`CI=true` or
`NEBULA_REQUIRE_SERVICES=1`): then it fails, so CI can never go green by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import email
import email.policy
import fcntl
import glob
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import docker
import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy.pool import NullPool

MANAGED_LABEL = "io.nebula.managed"
"""Label Nebula puts on everything it creates."""
TEST_LABEL = "io.nebula.test"
"""Label for what tests create directly; these labels are swept at teardown."""
PROJECT_LABEL = "io.nebula.project"
"""Label Nebula puts on a project's containers and networks (never MANAGED_LABEL)."""
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
    with _private_dockerd(dockerd, "nebula-dockerd-") as url, _forward_between_bridges():
        yield url


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
                [{}]
                if everything
                else [{"label": label} for label in (MANAGED_LABEL, PROJECT_LABEL, TEST_LABEL)]
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


def remove_managed(url: str) -> None:
    """Remove every container, network and volume labelled as Nebula's from the engine: an
    installation's, or a project's (which a later test's first sync would plan to remove)."""
    import docker

    client = docker.DockerClient(base_url=url, version=DOCKER_API_VERSION)
    try:
        for label in (f"{MANAGED_LABEL}=true", PROJECT_LABEL):
            ours = {"label": label}
            for container in client.containers.list(all=True, filters=ours):
                container.remove(force=True)
            for network in client.networks.list(filters=ours):
                network.remove()
            for volume in client.volumes.list(filters=ours):
                volume.remove(force=True)
    finally:
        client.close()


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


# -- Caddy, Pebble, PowerDNS -----------------------------------------------------------------


def _as_user(user: str) -> list[str]:
    """Run as `user` when we are root (servers should not run as root); as ourselves otherwise."""
    if os.geteuid() != 0:
        return []
    return [_which("setpriv", "util-linux"), f"--reuid={user}", f"--regid={user}", "--init-groups"]


def _owned_tmpdir(prefix: str, user: str, group: str | None = None) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(root, user, group or user)
    return root


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, **kwargs: object) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            httpx.get(url, timeout=1.0, **kwargs).raise_for_status()  # type: ignore[arg-type]
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after 30 s:\n{_tail(log)}") from None
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return _free_port()


@dataclasses.dataclass(frozen=True)
class CaddyServer:
    """A running Caddy: admin API on loopback; its HTTP/HTTPS ports are free ports for Nebula's
    `proxy:` config to take; certificates and its internal CA live under `storage`."""

    admin: str
    http_port: int
    https_port: int
    storage: Path

    def bootstrap(self) -> dict[str, object]:
        """The config it started with: admin address, storage, no system trust store."""
        return caddy_bootstrap(self.admin, self.storage)

    def reset(self) -> None:
        """Back to the bootstrap config (Nebula's routes and policies gone)."""
        httpx.post(f"{self.admin}/load", json=self.bootstrap(), timeout=10).raise_for_status()

    def internal_root(self) -> str:
        """PEM of Caddy's internal CA root (created on first use)."""
        response = httpx.get(f"{self.admin}/pki/ca/local", timeout=10)
        response.raise_for_status()
        root: str = response.json()["root_certificate"]
        return root


def caddy_bootstrap(admin: str, storage: Path) -> dict[str, object]:
    return {
        "admin": {"listen": admin.removeprefix("http://"), "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(storage)},
        "apps": {"pki": {"certificate_authorities": {"local": {"install_trust": False}}}},
    }


@contextlib.contextmanager
def caddy_server() -> Iterator[CaddyServer]:
    """Caddy (Debian `caddy`), unprivileged, own XDG dirs, admin API on a free loopback port."""
    caddy = _which("caddy", "caddy")
    root = _owned_tmpdir("nebula-caddy-", "caddy")
    admin = f"http://127.0.0.1:{_free_port()}"
    server = CaddyServer(admin, _free_port(), _free_port(), root / "data" / "caddy")
    config = root / "bootstrap.json"
    config.write_text(json.dumps(server.bootstrap()))
    log = root / "caddy.log"
    env = {
        "PATH": _PATH,
        "HOME": str(root),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_as_user("caddy"), caddy, "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_http(f"{admin}/config/", proc, log)
        yield server
    finally:
        _stop(proc)
        _remove_tree(root)


@dataclasses.dataclass(frozen=True)
class PebbleServer:
    """Pebble, Let's Encrypt's test ACME CA. `ca_pem` signs its API's own TLS certificate."""

    directory: str
    management: str
    ca_pem: Path

    def issuing_roots(self) -> str:
        """PEM of the root that signs the certificates it issues (new on every start)."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        response = httpx.get(f"{self.management}/roots/0", verify=context, timeout=10)
        response.raise_for_status()
        return response.text


@contextlib.contextmanager
def pebble_server(http_port: int, tls_port: int, dns_server: str | None) -> Iterator[PebbleServer]:
    """Pebble validating challenges on `http_port`/`tls_port` of the names it is asked for.

    With `dns_server` (host:port, e.g. a PowerDNS) it resolves those names there and performs
    real HTTP-01 validation; without it every challenge is accepted (PEBBLE_VA_ALWAYS_VALID).
    """
    pebble = _which("pebble", "pebble")
    openssl = _which("openssl", "openssl")
    root = _owned_tmpdir("nebula-pebble-", "nobody", "nogroup")
    root.chmod(0o755)  # Caddy reads ca.pem (`trusted_roots`) from here
    certs = root / "certs"
    certs.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _run([openssl, "req", "-x509", *ec, "-keyout", f"{certs}/ca.key", "-out", f"{certs}/ca.pem",
          "-days", "30", "-subj", "/CN=nebula test pebble CA"])  # fmt: skip
    _run([openssl, "req", *ec, "-keyout", f"{certs}/key.pem", "-out", f"{certs}/leaf.csr",
          "-subj", "/CN=localhost"])  # fmt: skip
    (certs / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    _run([openssl, "x509", "-req", "-in", f"{certs}/leaf.csr", "-CA", f"{certs}/ca.pem",
          "-CAkey", f"{certs}/ca.key", "-CAcreateserial", "-out", f"{certs}/cert.pem",
          "-days", "30", "-extfile", f"{certs}/ext.cnf"])  # fmt: skip
    for path in certs.iterdir():
        path.chmod(0o644)
    certs.chmod(0o755)
    port, management = _free_port(), _free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": f"{certs}/cert.pem",
            "privateKey": f"{certs}/key.pem",
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (root / "pebble.json").write_text(json.dumps(config))
    env = {"PATH": _PATH, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    if dns_server is None:
        env["PEBBLE_VA_ALWAYS_VALID"] = "1"
    command = [*_as_user("nobody"), pebble, "-config", str(root / "pebble.json")]
    if dns_server is not None:
        command += ["-dnsserver", dns_server]
    if command[0].endswith("setpriv"):  # nobody's group is nogroup, and it has no other groups
        command[1:4] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    log = root / "pebble.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = PebbleServer(
        f"https://127.0.0.1:{port}/dir", f"https://127.0.0.1:{management}", certs / "ca.pem"
    )
    try:
        trust = ssl.create_default_context(cafile=str(server.ca_pem))
        _wait_http(server.directory, proc, log, verify=trust)
        yield server
    finally:
        _stop(proc)
        _remove_tree(root)


@dataclasses.dataclass(frozen=True)
class PowerDnsServer:
    """PowerDNS Authoritative (gsqlite3 backend): HTTP API at `api_url` with `api_key`, DNS on
    127.0.0.1:`dns_port` (UDP and TCP)."""

    api_url: str
    api_key: str
    dns_port: int

    @property
    def dns_address(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def reset(self) -> None:
        """Delete every zone, so a test's first sync finds none of an earlier test's records
        (which it would plan to remove, and the removals guard would hold)."""
        server = f"{self.api_url}/api/v1/servers/localhost"
        headers = {"X-API-Key": self.api_key}
        with httpx.Client(headers=headers, timeout=10) as client:
            zones = client.get(f"{server}/zones")
            zones.raise_for_status()
            for zone in zones.json():
                client.delete(f"{server}/zones/{zone['id']}").raise_for_status()


@contextlib.contextmanager
def powerdns_server() -> Iterator[PowerDnsServer]:
    """A throwaway `pdns_server` (Debian `pdns-server pdns-backend-sqlite3`) on free ports."""
    pdns = _which("pdns_server", "pdns-server pdns-backend-sqlite3")
    schema = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
    if not schema.is_file():
        unavailable(f"{schema} not found; install it with: {_APT} pdns-backend-sqlite3")
    root = _owned_tmpdir("nebula-pdns-", "pdns")
    database = root / "pdns.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.executescript(schema.read_text())
    (root / "run").mkdir()
    server = PowerDnsServer(f"http://127.0.0.1:{_free_port()}", uuid.uuid4().hex, _free_port())
    (root / "pdns.conf").write_text(
        "\n".join(
            [
                "launch=gsqlite3",
                f"gsqlite3-database={database}",
                "local-address=127.0.0.1",
                f"local-port={server.dns_port}",
                f"socket-dir={root}/run",
                "daemon=no",
                "guardian=no",
                "disable-syslog=yes",
                "api=yes",
                f"api-key={server.api_key}",
                "webserver=yes",
                "webserver-address=127.0.0.1",
                f"webserver-port={server.api_url.rsplit(':', 1)[1]}",
                "webserver-allow-from=127.0.0.0/8",
                "security-poll-suffix=",
                "default-soa-content=ns1.nebula.test. hostmaster.@ 0 10800 3600 604800 3600",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        for path in (database, root / "run", root / "pdns.conf"):
            shutil.chown(path, "pdns", "pdns")
    log = root / "pdns.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_as_user("pdns"), pdns, f"--config-dir={root}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": _PATH},
        )
    try:
        _wait_http(
            f"{server.api_url}/api/v1/servers/localhost",
            proc,
            log,
            headers={"X-API-Key": server.api_key},
        )
        yield server
    finally:
        _stop(proc)
        _remove_tree(root)


@dataclasses.dataclass(frozen=True)
class AlertmanagerServer:
    """A running Prometheus Alertmanager: its API at `url`; it sends every alert to one webhook,
    and its `log` says how each delivery went (a refusal with the status and body it got)."""

    url: str
    log: Path

    def post(self, alerts: list[dict[str, object]]) -> None:
        """Post alerts to its API as Prometheus does (`endsAt` in the past: resolved)."""
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def alertmanager_server(webhook: str, credentials: str) -> Iterator[AlertmanagerServer]:
    """A throwaway `prometheus-alertmanager` (Debian package) on a free loopback port, without
    clustering, that sends each alert (a group per label set) to `webhook` with `credentials`
    as its bearer token: a second after it fires, at once when it resolves, then hourly."""
    binary = _which("prometheus-alertmanager", "prometheus-alertmanager")
    root = _owned_tmpdir("nebula-alertmanager-", "prometheus")
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["..."],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "webhook",
                "webhook_configs": [
                    {
                        "url": webhook,
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials": credentials}},
                    }
                ],
            }
        ],
    }
    (root / "alertmanager.yml").write_text(json.dumps(config))  # JSON is YAML
    server = AlertmanagerServer(f"http://127.0.0.1:{_free_port()}", root / "alertmanager.log")
    command = [
        *_as_user("prometheus"),
        binary,
        f"--config.file={root}/alertmanager.yml",
        f"--storage.path={root}/data",
        f"--web.listen-address={server.url.removeprefix('http://')}",
        "--cluster.listen-address=",  # no gossip with other Alertmanagers
    ]
    with server.log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={"PATH": _PATH})
    try:
        _wait_http(f"{server.url}/-/ready", proc, server.log)
        yield server
    finally:
        _stop(proc)
        _remove_tree(root)


NEBULAD = [sys.executable, "-c", "from nebula.cli.app import nebulad_main; nebulad_main()"]
"""nebulad run by this interpreter, as the console script would."""


@contextlib.contextmanager
def nebulad(*args: str, data: Path) -> Iterator[Path]:
    """A real nebulad with `args` and `--data-dir data`, once its API answers on its socket;
    stopped with SIGTERM (killed after 60 s) on the way out. Yields the socket's path."""
    command = [*NEBULAD, *args, "--data-dir", str(data)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    socket_path = data / "nebulad.sock"
    try:
        deadline = time.monotonic() + 30
        while not _answers(socket_path):  # the file exists a moment before it listens
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "nebulad did not start"
            time.sleep(0.1)
        yield socket_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(socket_path: Path) -> bool:
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(transport=transport, base_url="http://nebulad", timeout=5) as client:
            return client.get("/api/v1/status").status_code == 200
    except httpx.TransportError:
        return False


@dataclasses.dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage


@dataclasses.dataclass
class SmtpServer:
    """A running SMTP server (aiosmtpd) on loopback: plain SMTP, no TLS, AUTH with `user` and
    `password` only. Received mails are in `mails`; while `gate` is clear, a mail's DATA is
    held unanswered (a slow server)."""

    port: int
    user: str
    password: str
    mails: list[Mail] = dataclasses.field(default_factory=list)
    gate: threading.Event = dataclasses.field(default_factory=threading.Event)

    def apprise_url(self, to: str, sender: str = "nebula@example.org") -> str:
        """Apprise's URL for sending mail through this server."""
        return (
            f"mailto://{self.user}:{self.password}@127.0.0.1:{self.port}"
            f"?mode=insecure&from={sender}&to={to}"
        )


class _SmtpHandler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(  # noqa: N802  (the name aiosmtpd calls)
        self, smtp: SMTP, session: Session, envelope: Envelope
    ) -> str:
        await asyncio.get_running_loop().run_in_executor(None, self.server.gate.wait)
        message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(message, email.message.EmailMessage)
        mail = Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message)
        self.server.mails.append(mail)
        return "250 OK"


@contextlib.contextmanager
def smtp_server(user: str = "nebula", password: str = "smtp-pass-7f3a") -> Iterator[SmtpServer]:
    server = SmtpServer(_free_port(), user, password)
    server.gate.set()

    def authenticate(
        smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        _SmtpHandler(server),
        hostname="127.0.0.1",
        port=server.port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        server.gate.set()
        controller.stop()


# -- OpenSSH server ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SshdServer:
    """A running sshd on 127.0.0.1:`port` that lets `user` (whoever runs the tests) in with
    `client_key` only. `known_hosts` holds its host key (`host_key`, an OpenSSH public key line)."""

    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_key: str


@contextlib.contextmanager
def sshd_server(extra_config: str = "") -> Iterator[SshdServer]:
    """OpenSSH's sshd (Debian `openssh-server`) with its own host key, config (plus
    `extra_config`'s lines) and authorized keys in a temp dir; as root it needs `/run/sshd` (its
    privilege separation folder)."""
    sshd = _which("sshd", "openssh-server")
    keygen = _which("ssh-keygen", "openssh-client")
    root = Path(tempfile.mkdtemp(prefix="nebula-sshd-"))
    for key in ("host", "client"):
        _run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(root / key)])
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    host_key = (root / "host.pub").read_text().strip()
    port = _free_port()
    server = SshdServer(
        port,
        pwd.getpwuid(os.geteuid()).pw_name,
        root / "client",
        root / "known_hosts",
        host_key,
    )
    server.known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
        f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n" + extra_config
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = root / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_ssh(port, proc, log)
        yield server
    finally:
        _stop(proc)
        _remove_tree(root)


def _wait_ssh(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server sends its SSH banner."""
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd not ready after 30 s:\n{_tail(log)}")
        time.sleep(0.05)


# -- More Docker Engines: the nodes of a multi-node test --------------------------------------


@contextlib.contextmanager
def more_docker_daemons(count: int, *, own_network: bool = False) -> Iterator[list[str]]:
    """The `unix://` URLs of `count` more private dockerds, beside `docker_daemon`'s, one per
    node of a test of several nodes (never an external daemon: each node needs an engine of its
    own). Each is swept, stopped and removed at the end. With `own_network`, each runs in a
    network namespace of its own (its socket is a file, reached from here as ever): its
    containers' bridges and interfaces are on a network stack of their own, as another
    machine's are, not among every other engine's on this host's."""
    dockerd = _which("dockerd", "docker.io")
    if os.geteuid() != 0:
        unavailable("private dockerds need root: run as root")
    wrap = [_which("unshare", "util-linux"), "--net", "--", "sh", "-c", _LO_UP, "sh"]
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                _private_dockerd(dockerd, "nebula-node-", wrap if own_network else [])
            )
            for _ in range(count)
        ]


_LO_UP = 'ip link set lo up && exec "$@"'


CLONE_NEWNET = 0x40000000  # <sched.h>
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>


def own_network_namespace() -> None:
    """Move this test process (its calling thread, and what it starts from now on) into a network
    namespace of its own, with its own loopback, when it may (as root).

    Each xdist worker runs its own servers and private Docker Engine: in namespaces of their
    own, two engines' bridges never share a route, a port chosen free stays free, and what one
    worker's Caddy dials is never the other worker's container. The forwarding setting follows
    the host's.
    """
    if os.geteuid() != 0:
        return
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
    Path("/proc/sys/net/ipv4/ip_forward").write_text(forwarding)


_POOLS = itertools.count()


def address_pool() -> str:
    """A /16 no other private engine of the run hands out: 16 per test process (a private
    dockerd each, or a swarm's overlay networks), apart from every other xdist worker's. Two
    engines giving out the same subnet would put two bridges with one route on the host."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return f"10.{128 + 16 * (worker % 4) + next(_POOLS) % 16}.0.0/16"


@contextlib.contextmanager
def _private_dockerd(dockerd: str, prefix: str, wrap: list[str] | None = None) -> Iterator[str]:
    """A dockerd with all its state in a new folder, swept, stopped and removed at the end;
    `wrap`: a command line it is run under."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short socket paths (108 bytes)
    # Its own settings, not the host's /etc/docker/daemon.json; its networks from a pool no
    # other engine of the run hands out.
    pools = [{"base": address_pool(), "size": 24}]
    (root / "daemon.json").write_text(json.dumps({"default-address-pools": pools}))
    url = f"unix://{root}/docker.sock"
    log = root / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*(wrap or []), *dockerd_command(dockerd, url, root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": _PATH},
        )
    try:
        _wait_for_docker(url, proc, log)
        with _swept(url, everything=True):
            yield url
    finally:
        _stop(proc)
        _remove_tree(root)


@contextlib.contextmanager
def docker_sshd_server(
    docker_url: str, path: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[SshdServer]:
    """`sshd_server` as a node reached by Docker's SSH transport: its sessions have DOCKER_HOST
    pointing at `docker_url` (the private dockerd, which `docker system dial-stdio` dials), the
    folders `path` first on their PATH (then this interpreter's, the docker CLI's and the
    system's), the variables `env`, and SFTP."""
    docker_cli = _which("docker", "docker.io")
    dirs = [*path, str(Path(sys.executable).parent), str(Path(docker_cli).parent)]
    dirs += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    variables = {"DOCKER_HOST": docker_url, "PATH": os.pathsep.join(dirs), **(env or {})}
    extra = (
        "SetEnv " + " ".join(f'"{name}={value}"' for name, value in variables.items()) + "\n"
        "Subsystem sftp internal-sftp\n"
    )
    with sshd_server(extra) as server:
        yield server


# -- Docker Swarm ----------------------------------------------------------------------------


@contextlib.contextmanager
def swarm_daemon() -> Iterator[str]:
    """Yield the `unix://` URL of a Docker Engine that is the manager of a single-node swarm.

    A private Docker Engine of its own (so the session's engine is never turned into a swarm)
    runs `swarm init --advertise-addr 127.0.0.1`; at the end it leaves the swarm (`--force`: its
    last manager) before the engine stops, which removes every service.
    """
    with more_docker_daemons(1) as (url,):
        client = docker.APIClient(base_url=url, version=DOCKER_API_VERSION)
        try:
            if client.info().get("Swarm", {}).get("LocalNodeState") != "inactive":
                unavailable(f"the Docker Engine at {url} is already part of a swarm")
            client.init_swarm(
                advertise_addr="127.0.0.1",
                listen_addr=f"127.0.0.1:{free_port()}",
                default_addr_pool=[address_pool()],
                subnet_size=24,
            )
            try:
                yield url
            finally:
                client.leave_swarm(force=True)
        finally:
            client.close()
