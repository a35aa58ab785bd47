"""No plaintext anywhere: a secret planted in the vault and used by installations never shows up
in what Nebula writes or says.

The test runs Nebula as a person does (the CLI and nebulad as real processes, Docker for real):
it stores a secret, refers to it from installations (a service's environment, a hook, a service
that prints it and crashes), plans, applies, asks for status, rotates the secret and lets nebulad
apply the new value, calls every API route, reads the audit log, and provokes errors (an invalid
installation using the secret, a wrong master key). Then it searches everything Nebula wrote for
the plaintext, its hex and its base64: every CLI output, every API response and event, the
daemon's log, and every file under Nebula's data, cache and config dirs, the daemon's data dir
and the state database (with its WAL), and the labels Nebula puts on containers. Only a
container's environment may hold the value (`docker inspect` shows it): that is where it goes.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest

import servers
from nebula.kinds.packages.types import LABEL_INSTALLATION

TOKEN = "no-plaintext-api-token-42"
NEBULA = [sys.executable, "-c", "from nebula.cli.app import main; main()"]
NEBULAD = [sys.executable, "-c", "from nebula.cli.app import nebulad_main; nebulad_main()"]


def forms(value: str) -> dict[str, bytes]:
    """The value as it might be written: plain, hex, and base64 at each of the three byte
    alignments it can have inside a longer encoded text (the edges of each are trimmed)."""
    raw = value.encode()
    found = {"plain": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for shift in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * shift + raw).rstrip(b"=")
            found[f"{name}+{shift}"] = encoded[4:-4]
    return found


@dataclass
class Evidence:
    """Everything Nebula said, by where it came from."""

    said: dict[str, bytes] = field(default_factory=dict)

    def add(self, where: str, data: bytes | str) -> None:
        self.said[where] = data.encode() if isinstance(data, str) else data

    def add_tree(self, root: Path, skip: Callable[[Path], bool] = lambda _: False) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and not skip(path):
                self.add(str(path), path.read_bytes())

    def leaks(self, value: str) -> list[str]:
        return [
            f"{where}: {kind}"
            for where, data in self.said.items()
            for kind, form in forms(value).items()
            if form in data
        ]


@dataclass
class Lab:
    root: Path
    repo: Path
    env: dict[str, str]
    docker_host: str
    image: str
    evidence: Evidence

    def nebula(
        self,
        *args: str,
        code: int | None = 0,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        done = subprocess.run(
            [*NEBULA, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env or self.env,
            timeout=300,
            check=False,
        )
        said = done.stdout + done.stderr
        self.evidence.add(f"nebula {' '.join(args)} (#{len(self.evidence.said)})", said)
        if code is not None:
            assert done.returncode == code, f"nebula {' '.join(args)}: {done.returncode}\n{said}"
        return said

    def write(self, name: str, text: str | None) -> None:
        path = self.repo / "packages" / f"{name}.yaml"
        if text is None:
            path.unlink()
        else:
            path.write_text(text)


def app_with_secret(image: str) -> str:
    return f"""\
variables:
  - {{name: APP_PASSWORD, secret: true, expose_to_hooks: true}}
values:
  APP_PASSWORD: ${{secret:lab.password}}
compose:
  services:
    web:
      image: {image}
      init: true
      environment:
        APP_PASSWORD: ${{APP_PASSWORD}}
        DATABASE_URL: postgresql://app:${{APP_PASSWORD}}@db/app
hooks:
  post_install:
    - echo "post-install sees $APP_PASSWORD"
"""


def crashing_app(image: str) -> str:
    """A service that prints the secret and exits: its logs reach Nebula's error path."""
    return f"""\
compose:
  services:
    crashy:
      image: {image}
      init: true
      restart: "no"
      environment:
        LEAKY: ${{secret:lab.password}}
      command: ["sh", "-c", "echo starting with $$LEAKY; echo $$LEAKY >&2; sleep 1; exit 3"]
      healthcheck: {{test: [CMD, "true"], interval: 5s}}
"""


def invalid_app(image: str) -> str:
    """Invalid twice over, both places naming the secret."""
    return f"""\
compose:
  services:
    broken:
      image: {image}
      ports: ["${{secret:lab.password}}"]
      environment:
        X: ${{secret:lab.password}}
      imagee: typo
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@pytest.fixture
def lab(tmp_path: Path, docker_host: str, test_image: str) -> Iterator[Lab]:
    repo = tmp_path / "homelab"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("defaults: {health_timeout: 20s}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")},
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NEBULA_MASTER_KEY_FILE": str(tmp_path / "keys" / "master.key"),
        "NEBULA_DATABASE_URL": f"sqlite:///{tmp_path}/state/nebula.db",
        "NEBULA_DOCKER_HOST": docker_host,
        "COLUMNS": "200",
    }
    (tmp_path / "state").mkdir(mode=0o700)  # as a private data dir is: no warning
    yield Lab(tmp_path, repo, env, docker_host, test_image, Evidence())
    client = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:
        for name in ("vaultapp", "crashy", "broken"):
            label = f"{LABEL_INSTALLATION}={name}"
            for container in client.containers.list(all=True, filters={"label": label}):
                container.remove(force=True)
            for network in client.networks.list(filters={"label": label}):
                network.remove()
    finally:
        client.close()


@contextmanager
def nebulad(lab: Lab) -> Iterator[tuple[str, Path]]:
    """nebulad following the repo folder, logging to a file; yields its TCP API URL and log."""
    data = Path(tempfile.mkdtemp(prefix="nebula-np-", dir="/tmp"))  # a short socket path
    log = lab.root / "nebulad.log"
    port = free_port()
    command = [
        *NEBULAD, "--source", str(lab.repo), "--watch", "--data-dir", str(data),
        "--poll-interval", "3600s", "--drift-interval", "3600s",
        "--tcp-listen", f"127.0.0.1:{port}", "--log-json",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env={**lab.env, "NEBULA_TOKEN": TOKEN},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: (data / "nebulad.sock").exists() or process.poll() is not None)
        assert process.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}", data
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        lab.evidence.add(str(log), log.read_bytes())
        lab.evidence.add_tree(data, skip=lambda p: p.is_socket())
        shutil.rmtree(data, ignore_errors=True)


def labels_of(lab: Lab, container: str) -> str:
    """The labels Nebula put on the container (its spec among them), as JSON."""
    client = docker.DockerClient(base_url=lab.docker_host, version=servers.DOCKER_API_VERSION)
    try:
        return json.dumps(client.containers.get(container).attrs["Config"]["Labels"])
    finally:
        client.close()


def env_of(lab: Lab, container: str) -> list[str]:
    """The container's environment as Docker holds it (where the value is meant to be)."""
    client = docker.DockerClient(base_url=lab.docker_host, version=servers.DOCKER_API_VERSION)
    try:
        env: list[str] = client.containers.get(container).attrs["Config"]["Env"]
        return env
    except docker.errors.NotFound:  # between removal and re-creation
        return []
    finally:
        client.close()


def test_the_search_finds_each_form_it_looks_for() -> None:
    value = "NbPlain" + secrets.token_hex(10)
    for shift in range(3):
        blob = b"prefix:" + base64.b64encode(b"x" * shift + value.encode() + b"tail") + b"\n"
        assert f"blob: base64+{shift}" in Evidence({"blob": blob}).leaks(value)
    assert Evidence({"hex": value.encode().hex().encode()}).leaks(value) == ["hex: hex"]


def test_a_planted_secret_never_appears_in_anything_nebula_writes(lab: Lab) -> None:
    first = "NbPlain" + secrets.token_hex(10)
    second = "NbRotated" + secrets.token_hex(10)
    plan_apply_and_look(lab, first)
    provoke_errors(lab)
    rotate_with_the_wrong_key_first(lab, first, second)
    let_nebulad_apply_and_call_its_api(lab, second)
    audit = json.loads(lab.nebula("audit", "-o", "json", "-n", "1000"))
    assert {
        "installation.apply",
        "secret.set",
        "secret.rotate",
        "sync.applied",
        "daemon.suspend",
    } <= {e["action"] for e in audit}
    lab.nebula("audit")
    lab.nebula("audit", "verify")

    for folder in ("cache", "data", "config", "state"):
        lab.evidence.add_tree(lab.root / folder)
    lab.evidence.add_tree(lab.repo, skip=lambda p: ".git" in p.parts)
    assert len(lab.evidence.said) > 40
    leaks = lab.evidence.leaks(first) + lab.evidence.leaks(second)
    assert not leaks, "the plaintext was found in:\n" + "\n".join(leaks)


def plan_apply_and_look(lab: Lab, first: str) -> None:
    repo = str(lab.repo)
    lab.nebula("secrets", "init")
    lab.nebula("secrets", "set", "lab.password", stdin=first + "\n")
    lab.write("vaultapp", app_with_secret(lab.image))
    lab.nebula("validate", repo)
    assert "vaultapp" in lab.nebula("plan", repo)
    lab.nebula("plan", repo, "-o", "json")
    assert "vaultapp running" in lab.nebula("apply", repo, "--yes")
    assert f"APP_PASSWORD={first}" in env_of(lab, "vaultapp-web")  # Docker has it, as meant
    assert f"DATABASE_URL=postgresql://app:{first}@db/app" in env_of(lab, "vaultapp-web")
    lab.evidence.add("docker labels of vaultapp-web", labels_of(lab, "vaultapp-web"))
    lab.nebula("apply", repo, "--yes", "-o", "json")
    lab.nebula("plan", repo, "--show-unchanged")
    lab.nebula("status")
    lab.nebula("status", "-o", "json")
    lab.nebula("secrets", "list", "--repo", repo)
    lab.nebula("secrets", "get", "lab.password")
    lab.nebula("secrets", "get", "lab.password", "-o", "json")


def provoke_errors(lab: Lab) -> None:
    repo = str(lab.repo)
    # An invalid installation that uses the secret: refused with file and line, nothing touched.
    lab.write("broken", invalid_app(lab.image))
    assert "broken.yaml" in lab.nebula("validate", repo, code=2)
    lab.nebula("plan", repo, code=2)
    lab.nebula("apply", repo, "--yes", "-o", "json", code=2)
    lab.write("broken", None)
    # A service that prints the secret and dies: its failure is reported, the value is not.
    lab.write("crashy", crashing_app(lab.image))
    crashed = lab.nebula("apply", repo, "--yes", code=1)
    assert "crashy" in crashed and "failed" in crashed
    assert "starting with ••••" in crashed  # its logs are shown, the value masked
    lab.nebula("status")
    lab.nebula("status", "-o", "json")
    lab.write("crashy", None)
    lab.nebula("apply", repo, "--yes")


def rotate_with_the_wrong_key_first(lab: Lab, first: str, second: str) -> None:
    repo = str(lab.repo)
    lab.nebula("secrets", "rotate", "lab.password", "--stdin", stdin=second + "\n")
    assert "vaultapp" in lab.nebula("plan", repo)  # a change, shown by fingerprint only
    other = {**lab.env, "NEBULA_MASTER_KEY_FILE": str(lab.root / "other" / "master.key")}
    lab.nebula("secrets", "init", "--database-url", f"sqlite:///{lab.root}/other.db", env=other)
    wrong = lab.nebula("apply", repo, "--yes", env=other, code=1)
    assert "master key" in wrong
    lab.nebula("apply", repo, "--yes", env={**other, "NEBULA_DEBUG": "1"}, code=1)  # traceback
    assert f"APP_PASSWORD={first}" in env_of(lab, "vaultapp-web")  # nothing changed


def let_nebulad_apply_and_call_its_api(lab: Lab, second: str) -> None:
    with nebulad(lab) as (base, data):
        eventually(lambda: f"APP_PASSWORD={second}" in env_of(lab, "vaultapp-web"))
        lab.evidence.add("docker labels, re-created", labels_of(lab, "vaultapp-web"))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as api:
            events: list[bytes] = []

            def follow() -> None:
                with api.stream("GET", "/api/v1/events") as stream:
                    deadline = time.monotonic() + 6
                    for chunk in stream.iter_raw():
                        events.append(chunk)
                        if time.monotonic() > deadline:
                            return

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            time.sleep(1)
            for method, path, body in [
                ("POST", "/api/v1/sync", {}),
                ("GET", "/api/v1/status", None),
                ("GET", "/api/v1/installations", None),
                ("GET", "/api/v1/syncs?limit=50", None),
                ("GET", "/api/v1/auth/whoami", None),
                ("GET", "/metrics", None),
                ("POST", "/api/v1/suspend", {}),
                ("POST", "/api/v1/resume", {}),
                ("POST", "/api/v1/rollback", {"commit": "0badc0ffee"}),  # a folder: refused
            ]:
                answer = api.request(method, path, json=body)
                assert answer.status_code < 500, (path, answer.text)
                lab.evidence.add(f"API {method} {path}", answer.content)
            for sync in api.get("/api/v1/syncs?limit=50").json()["syncs"]:
                answer = api.get(f"/api/v1/syncs/{sync['id']}")
                lab.evidence.add(f"API GET /api/v1/syncs/{sync['id']}", answer.content)
            follower.join(15)
            lab.evidence.add("API event stream", b"".join(events))
            assert b"event: sync_finished" in b"".join(events)
        socket_args = ("--socket", str(data / "nebulad.sock"))
        lab.nebula("sync", "status", *socket_args)
        lab.nebula("sync", "history", *socket_args)
        lab.evidence.add_tree(lab.root / "state")  # the database with its WAL, live
