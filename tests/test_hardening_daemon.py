"""Hardening of the Docker adapter and nebulad under concurrency and faults, on real servers.

- Reads of the engine from many threads at once each get their own answer (they once shared one
  kept-alive connection and read each other's responses).
- 200 parallel API reads over nebulad's socket during a sync all answer 200; the sync succeeds.
- A full disk under nebulad's data dir (a small tmpfs, filled for real): the daemon stays up,
  `sync now --wait` answers with the failure instead of hanging, `/status` and `/metrics` show
  the fault, and once space is freed the daemon recovers by itself.
- Two `nebula apply` at once: the second waits for the first (saying for whom), plans again and
  both succeed. An apply killed mid-way leaves `installing`; once its containers run as
  deployed, the next apply (with nothing to change) says `running`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from typer.testing import CliRunner

from nebula.cli.app import app as cli_app
from nebula.providers.docker import DockerProvider
from nebula.store import Store
from test_daemon import IMAGE
from test_daemon_crash import Nebulad, Repo, eventually, remove_managed, running, tag_image

READERS = 16
API_READS = 200
READ_PATHS = (
    "/api/v1/status",
    "/api/v1/syncs",
    "/api/v1/installations",
    "/api/v1/marketplace/installations",
    "/metrics",
)
NEBULA_YAML = "defaults: {health_timeout: 60s, stop_timeout: 2s}\n"


def slow_app(seconds: int) -> str:
    """An app that turns healthy only after `seconds`: its apply takes that long."""
    return (
        f"compose:\n  services:\n    app:\n      image: {IMAGE}\n      init: true\n"
        "      restart: unless-stopped\n"
        f'      command: ["sh", "-c", "sleep {seconds}; touch /up; exec sleep 3600"]\n'
        '      healthcheck: {test: ["CMD", "test", "-f", "/up"], interval: 1s, retries: 60}\n'
    )


@pytest.fixture
def engine(docker_host: str, test_image: str) -> Iterator[docker.DockerClient]:
    client = tag_image(docker_host, test_image)
    yield client
    remove_managed(client)
    client.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A folder with a short path: nebulad's socket path must fit in 107 bytes."""
    root = Path(tempfile.mkdtemp(prefix="nebh-", dir="/tmp"))
    yield root
    subprocess.run(["umount", "-q", str(root / "data")], check=False)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def api(nebulad: Nebulad) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(nebulad.socket))
    return httpx.Client(base_url="http://nebulad", transport=transport, timeout=60)


def sync_now(nebulad: Nebulad, timeout: float) -> tuple[int, dict[str, Any]]:
    """`nebula sync now --wait --output json`: its exit code and the sync it reports."""
    socket = str(nebulad.socket)
    command = ["sync", "now", "--wait", "--timeout", str(timeout), "--output", "json"]
    result = CliRunner().invoke(cli_app, [*command, "--socket", socket])
    try:
        record: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(result.stdout + result.stderr) from None
    return result.exit_code, record


def test_parallel_observes_each_get_their_own_answer(
    docker_host: str, engine: docker.DockerClient
) -> None:
    provider = DockerProvider(docker_host)
    try:
        engine.networks.create("solo_default", labels={"io.nebula.managed": "true"})
        engine.volumes.create("solo_data", labels={"io.nebula.managed": "true"})
        expected = provider.observe()
        assert [n.name for n in expected.networks] == ["solo_default"]
        with ThreadPoolExecutor(READERS) as pool:
            seen = list(pool.map(lambda _: provider.observe(), range(READERS * 20)))
        assert all(observed == expected for observed in seen)
    finally:
        provider.close()


def test_200_parallel_api_reads_during_a_sync_all_answer(
    short_tmp: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    repo = Repo(short_tmp)
    repo.push("first", {"nebula.yaml": NEBULA_YAML})
    nebulad = Nebulad(repo.bare, short_tmp / "data", docker_host, "--poll-interval", "3600s")
    nebulad.start()
    try:
        nebulad.wait_ready()
        repo.push("four slow apps", {f"packages/s{i}.yaml": slow_app(4) for i in range(4)})
        with api(nebulad) as client:
            assert client.post("/api/v1/sync", json={"trigger": "manual"}).status_code == 202
            eventually(
                lambda: (nebulad.status()["last_sync"] or {}).get("status") == "running",
                30,
                "the sync starts",
                nebulad.tail,
            )
            with ThreadPoolExecutor(40) as pool:
                answers = list(
                    pool.map(
                        lambda i: client.get(READ_PATHS[i % len(READ_PATHS)]), range(API_READS)
                    )
                )
            during = nebulad.status()["last_sync"]
        assert [a.status_code for a in answers] == [200] * API_READS, nebulad.tail()
        assert during["status"] == "running"  # the reads really overlapped the apply
        eventually(
            lambda: nebulad.status()["last_sync"]["status"] != "running",
            60,
            "sync ends",
            nebulad.tail,
        )
        last = nebulad.status()["last_sync"]
        assert (last["status"], last["errors"]) == ("succeeded", []), nebulad.tail()
        assert running(engine) == {f"s{i}-app" for i in range(4)}
    finally:
        nebulad.stop()


def test_a_full_disk_is_reported_answered_and_recovered_from(
    short_tmp: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    data = short_tmp / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data)], check=True)
    repo = Repo(short_tmp)
    repo.push("first", {"nebula.yaml": NEBULA_YAML, "packages/one.yaml": slow_app(0)})
    options = ("--poll-interval", "3600s", "--drift-interval", "3600s")
    nebulad = Nebulad(repo.bare, data, docker_host, *options)
    nebulad.log = short_tmp / "nebulad.log"  # not on the disk that fills up
    nebulad.start()
    filler = data / "filler"
    try:
        nebulad.wait_ready()
        eventually(lambda: running(engine) == {"one-app"}, 60, "first apply", nebulad.tail)
        eventually(lambda: nebulad.status()["applied_commit"] is not None, 30, "recorded")

        sha = repo.push("add two", {"packages/two.yaml": slow_app(0)})
        with filler.open("wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        started = time.monotonic()
        code, record = sync_now(nebulad, timeout=120)
        assert time.monotonic() - started < 60  # an answer, not a hang
        assert code == 1 and record["status"] == "failed", record
        assert "full" in " ".join(record["errors"]) or "space" in " ".join(record["errors"])
        assert nebulad.proc is not None and nebulad.proc.poll() is None, nebulad.tail()
        faults = nebulad.status()["faults"]
        assert "sync" in faults, faults
        with api(nebulad) as client:
            exported = client.get("/metrics").text
        assert 'nebula_daemon_faulty{part="sync"} 1.0' in exported
        assert running(engine) == {"one-app"}

        filler.unlink()  # space again: the daemon carries on by itself, unasked
        eventually(lambda: running(engine) == {"one-app", "two-app"}, 90, "recovered", nebulad.tail)
        eventually(lambda: nebulad.status()["applied_commit"] == sha, 60, "applied", nebulad.tail)
        status = nebulad.status()
        assert status["faults"] == {}
        assert status["last_sync"]["status"] == "succeeded"
        code, record = sync_now(nebulad, timeout=120)
        assert (code, record["status"]) == (0, "succeeded"), record
        assert not [s for s in nebulad_syncs(nebulad) if s["status"] == "running"]
    finally:
        nebulad.stop()


def nebulad_syncs(nebulad: Nebulad) -> list[dict[str, Any]]:
    with api(nebulad) as client:
        syncs: list[dict[str, Any]] = client.get("/api/v1/syncs?limit=100").json()["syncs"]
    return syncs


def write_repo(root: Path, apps: dict[str, str]) -> Path:
    (root / "packages").mkdir(parents=True)
    (root / "nebula.yaml").write_text(NEBULA_YAML)
    for name, text in apps.items():
        (root / "packages" / f"{name}.yaml").write_text(text)
    return root


def start_apply(repo: Path, docker_host: str, database: str, cache: Path) -> subprocess.Popen[str]:
    """`nebula apply` as a person runs it: its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
    command = [sys.executable, "-c", "from nebula.cli.entry import main; main()", "apply"]
    return subprocess.Popen(
        [*command, str(repo), "--yes", "--docker-host", docker_host, "--database-url", database],
        env={**env, "XDG_CACHE_HOME": str(cache), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def statuses(database: str) -> dict[str, str]:
    with Store(database) as store:
        return {i.name: i.status for i in store.installations()}


def test_two_applies_at_once_take_turns_and_both_succeed(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    repo = write_repo(tmp_path / "lab", {f"t{i}": slow_app(2) for i in range(3)})
    database = f"sqlite:///{tmp_path / 'nebula.db'}"
    applies = [start_apply(repo, docker_host, database, tmp_path / f"c{i}") for i in range(2)]
    outputs = [apply.communicate(timeout=240) for apply in applies]
    for apply, (out, err) in zip(applies, outputs, strict=True):
        assert apply.returncode == 0, out + err
    waited = [err for _, err in outputs if "waiting for nebula apply (pid" in err]
    assert len(waited) == 1, outputs
    assert running(engine) == {"t0-app", "t1-app", "t2-app"}
    assert statuses(database) == {"t0": "running", "t1": "running", "t2": "running"}


def test_status_follows_what_runs_after_an_apply_cut_short(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    repo = write_repo(tmp_path / "lab", {"k": slow_app(3)})
    database = f"sqlite:///{tmp_path / 'nebula.db'}"
    apply = start_apply(repo, docker_host, database, tmp_path / "c1")
    eventually(lambda: running(engine) == {"k-app"}, 60, "container started")
    apply.send_signal(signal.SIGKILL)  # while it waits for health
    apply.wait(timeout=30)
    assert statuses(database) == {"k": "installing"}
    healthy = {"label": "io.nebula.managed=true", "health": "healthy"}
    eventually(lambda: bool(engine.containers.list(filters=healthy)), 60, "healthy")

    again = start_apply(repo, docker_host, database, tmp_path / "c2")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and "No changes" in out, out + err
    assert statuses(database) == {"k": "running"}
