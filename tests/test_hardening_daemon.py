"""Hardening of the Docker adapter and nebulad under concurrency and faults, on real servers.

- Reads of the engine from many threads at once each get their own answer (they once shared one
  kept-alive connection and read each other's responses).
- 200 parallel API reads over nebulad's socket during a sync all answer 200; the sync succeeds.
- A full disk under nebulad's data dir (a small tmpfs, filled for real): the daemon stays up,
  `sync now --wait` answers with the failure instead of hanging, `/status` and `/metrics` show
  the fault, and once space is freed the daemon recovers by itself.
- The apply lock is the state store's (an advisory lock on PostgreSQL, a file beside SQLite's
  database), whoever takes it from whichever data dir. Two `nebula apply` at once: the second
  waits for the first (saying for whom), then plans, and both succeed; one that waited asks
  about the removals its plan now makes, and applies the repo as it is once it holds the lock.
  A prompt never holds the lock; deletions that grew since they were confirmed are asked about
  again. nebulad waiting for the lock says so and stops at once when asked. An apply killed
  mid-way leaves `installing`; once its containers run as deployed, the next apply (with
  nothing to change) says `running`. So does the apply after one that failed its installations
  because the Docker Engine (a private dockerd of the test's own) restarted while it waited for
  their health, once the containers the engine brought back are healthy; `nebula status` too.
- Syncs whose end the store refused are closed as failed once it accepts writes, and only
  those: another node's running sync is left alone.
- A health check that cannot be recorded stays a named fault while others pass, and a late
  clear never erases a newer fault; a loop that ran well restarts after the first pause; a lost
  event stream is reported, an error handling an event is raised; a read of a hung engine fails
  after one timeout, not two.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import httpx
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

import servers
from nebula.cli.app import app as cli_app
from nebula.daemon import faults as faults_module
from nebula.daemon.events import EventBus
from nebula.daemon.faults import Faults
from nebula.daemon.health import HealthMonitor
from nebula.engine.load import load_desired
from nebula.errors import ProviderError
from nebula.providers.docker import ContainerEvent, DockerProvider
from nebula.providers.docker.http import EngineReader
from nebula.store import Store, installation_runs
from test_daemon import IMAGE
from test_daemon_crash import (
    Nebulad,
    Repo,
    RestartableEngine,
    eventually,
    running,
    tag_image,
)

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
    yield client  # what the test left is removed by conftest's sweep
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
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
        started = time.monotonic()
        code, record = sync_now(nebulad, timeout=120)
        assert time.monotonic() - started < 60  # an answer, not a hang
        assert code == 1 and record["status"] == "failed", record
        assert "full" in " ".join(record["errors"]) or "space" in " ".join(record["errors"])
        assert nebulad.proc is not None and nebulad.proc.poll() is None, nebulad.tail()
        faults = nebulad.status()["faults"]
        assert "sync" in faults, faults
        shown = CliRunner().invoke(cli_app, ["sync", "status", "--socket", str(nebulad.socket)])
        assert "fault in sync:" in shown.stdout, shown.stdout
        with api(nebulad) as client:
            exported = client.get("/metrics").text
        assert 'nebula_daemon_faulty{part="sync"} 1.0' in exported
        assert running(engine) == {"one-app"}

        filler.unlink()  # space again: the daemon carries on by itself, unasked
        eventually(lambda: running(engine) == {"one-app", "two-app"}, 90, "recovered", nebulad.tail)
        eventually(lambda: nebulad.status()["applied_commit"] == sha, 60, "applied", nebulad.tail)
        status = nebulad.status()
        assert status["faults"] == {}
        shown = CliRunner().invoke(cli_app, ["sync", "status", "--socket", str(nebulad.socket)])
        assert "fault" not in shown.stdout, shown.stdout
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


def start_apply(
    repo: Path,
    docker_host: str,
    database: str,
    user: Path,
    *,
    yes: bool = True,
    terminal: int | None = None,
) -> subprocess.Popen[str]:
    """`nebula apply` as a person runs it: its own process, its own user dirs under `user`; at
    the `terminal` given (a pseudo-terminal's end: it asks there), its errors then in stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
    command = [sys.executable, "-c", "from nebula.cli.entry import main; main()", "apply"]
    options = ["--docker-host", docker_host, "--database-url", database, *(["--yes"] * yes)]
    return subprocess.Popen(
        [*command, str(repo), *options],
        env={
            **env,
            "XDG_CACHE_HOME": str(user / "cache"),
            "XDG_DATA_HOME": str(user / "data"),
            "COLUMNS": "200",
        },
        stdin=subprocess.DEVNULL if terminal is None else terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if terminal is None else subprocess.STDOUT,
        text=True,
    )


def statuses(database: str) -> dict[str, str]:
    with Store(database) as store:
        return {i.name: i.status for i in store.installations()}


def test_two_applies_at_once_take_turns_and_both_succeed(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient, database_url: str
) -> None:
    """Run by two users (each its own data dir) on SQLite and on PostgreSQL alike."""
    repo = write_repo(tmp_path / "lab", {f"t{i}": slow_app(2) for i in range(3)})
    database = database_url
    Store(database).close()  # an existing state database (two processes creating one race)
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


@pytest.mark.docker
def test_status_follows_what_runs_after_the_engine_restarted_mid_apply(tmp_path: Path) -> None:
    """The Docker Engine (a private dockerd of this test's own) stops and starts again while
    `nebula apply` waits for three installations to turn healthy: that apply fails, and once
    the containers run healthy again the next apply (nothing to change) and `nebula status`
    say `running` for each (they once stayed `error` for good)."""
    own_engine = RestartableEngine()  # stopped and swept of everything by close()
    try:
        own_engine.start()
        url = own_engine.url
        with contextlib.closing(tag_image(url, servers.build_test_image(url))) as client:
            names = ("p", "q", "r")
            repo = write_repo(tmp_path / "lab", {name: slow_app(5) for name in names})
            database = f"sqlite:///{tmp_path / 'nebula.db'}"
            apply = start_apply(repo, url, database, tmp_path / "c1")
            expected = {f"{name}-app" for name in names}
            eventually(lambda: running(client) == expected, 60, "containers started")
            own_engine.stop()  # while the apply waits for health
            own_engine.start()
            out, err = apply.communicate(timeout=60)
            assert apply.returncode == 1, out + err
            assert set(statuses(database).values()) <= {"error", "installing"}, statuses(database)

            healthy = {"label": "io.nebula.managed=true", "health": "healthy"}
            eventually(lambda: len(client.containers.list(filters=healthy)) == 3, 60, "healthy")
            again = start_apply(repo, url, database, tmp_path / "c2")
            out, err = again.communicate(timeout=60)
            assert again.returncode == 0 and "No changes" in out, out + err
            assert statuses(database) == dict.fromkeys(names, "running")

            shown = CliRunner().invoke(
                cli_app,
                ["status", "--docker-host", url, "--database-url", database, "--output", "json"],
            )
            assert shown.exit_code == 0, shown.stdout + shown.stderr
            seen = {
                i["name"]: (i["status"], [(c["state"], c["health"]) for c in i["containers"]])
                for i in json.loads(shown.stdout)["installations"]
            }
            assert seen == dict.fromkeys(names, ("running", [("running", "healthy")])), seen
    finally:
        own_engine.close()


# -- the apply lock belongs to the store ------------------------------------------------------

HOLD_LOCK = """
import sys, time
from nebula.store import Store
with Store(sys.argv[1]) as store:
    with store.apply_lock("nebula apply", lambda m: print(m, flush=True)):
        print("acquired", flush=True)
"""


def test_the_apply_lock_is_the_stores_whoever_takes_it(database_url: str, tmp_path: Path) -> None:
    """nebulad (as root) and `nebula apply` (as a user, other data dirs) share one lock: the one
    that waits names the holder and goes on once the holder is done."""
    with Store(database_url) as store, store.apply_lock("nebulad", lambda _: None):
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "other-user")}
        waiter = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, database_url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiter.stdout is not None
        first = waiter.stdout.readline().strip()
        assert first == f"waiting for nebulad (pid {os.getpid()}), which is applying, to finish"
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting
    out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, out.strip()) == (0, "acquired"), err


def test_an_apply_that_waited_asks_about_the_removals_it_now_makes(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    """`nebula apply` plans only once it holds the lock: an apply that waited for another sees
    what that one made and asks before deleting it (it once confirmed an older plan, then
    deleted what a plan made after the wait said, unasked)."""
    one_at_a_time = "defaults: {health_timeout: 60s, stop_timeout: 2s, parallelism: 1}\n"
    first = write_repo(tmp_path / "first", {"a": slow_app(8), "z": slow_app(0)})
    (first / "nebula.yaml").write_text(one_at_a_time)
    second = write_repo(tmp_path / "second", {"a": slow_app(8), "b": slow_app(0)})  # no z
    (second / "nebula.yaml").write_text(one_at_a_time)
    database = f"sqlite:///{tmp_path / 'nebula.db'}"
    applying = start_apply(first, docker_host, database, tmp_path / "c1")
    eventually(lambda: running(engine) == {"a-app"}, 60, "the first apply runs")
    waiting = start_apply(second, docker_host, database, tmp_path / "c2", yes=False)
    out, err = waiting.communicate(timeout=240)
    assert applying.wait(timeout=240) == 0
    assert "waiting for nebula apply (pid" in err, out + err
    assert waiting.returncode != 0 and "rerun with --yes" in err, out + err
    assert running(engine) == {"a-app", "z-app"}  # nothing deleted unasked


class Prompted:
    """`nebula apply` at a terminal, without --yes: it asks before deleting."""

    def __init__(self, repo: Path, docker_host: str, database: str, user: Path) -> None:
        self.terminal, replica = os.openpty()
        self.proc = start_apply(repo, docker_host, database, user, yes=False, terminal=replica)
        os.close(replica)
        self.output = ""

    def read(self, deadline: float) -> bool:
        """Read what it wrote next, by `deadline`; False once it closed its output."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"timed out: {self.output}"
        chunk = os.read(fd, 65536).decode(errors="replace")
        self.output += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 60) -> None:
        """Read its output until `text` shows (a prompt ends in no newline)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.read(deadline), f"ended before {text!r}: {self.output}"

    def answer(self, line: str) -> None:
        os.write(self.terminal, f"{line}\n".encode())

    def finish(self, timeout: float = 120) -> int:
        """Its exit code, once it ended, with all its output read."""
        deadline = time.monotonic() + timeout
        while self.read(deadline):
            pass
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.terminal)


def test_a_prompt_never_holds_the_apply_lock_and_changed_deletions_are_asked_again(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    """While `nebula apply` asks before deleting, nebulad or another apply takes the lock at
    once (it once held it at the prompt, stalling nebulad for as long as nobody answered). A
    plan that deletes more by the time it is carried out is shown and asked about again."""
    repo = write_repo(tmp_path / "lab", {name: slow_app(0) for name in "abc"})
    database = f"sqlite:///{tmp_path / 'nebula.db'}"
    assert start_apply(repo, docker_host, database, tmp_path / "c0").wait(timeout=120) == 0

    def refuse(message: str) -> None:
        raise AssertionError(f"the prompt holds the apply lock: {message}")

    (repo / "packages" / "c.yaml").unlink()
    asking = Prompted(repo, docker_host, database, tmp_path / "c1")
    try:
        asking.expect("Delete 1 container(s)?")
        with Store(database) as store, store.apply_lock("nebulad", refuse):
            pass
        asking.answer("y")
        assert asking.finish() == 0, asking.output
    finally:
        asking.close()
    assert running(engine) == {"a-app", "b-app"}
    assert asking.output.count("Plan:") == 1, asking.output  # shown once, not again to apply

    (repo / "packages" / "b.yaml").unlink()
    asking = Prompted(repo, docker_host, database, tmp_path / "c2")
    try:
        asking.expect("Delete 1 container(s)?")
        (repo / "packages" / "a.yaml").unlink()  # meanwhile
        asking.answer("y")
        asking.expect("Delete 2 container(s)?")
        asking.answer("n")
        assert asking.finish() == 1, asking.output
    finally:
        asking.close()
    assert "The plan changed since it was confirmed" in asking.output, asking.output
    assert "nothing applied" in asking.output, asking.output
    assert running(engine) == {"a-app", "b-app"}  # nothing deleted that was not confirmed


def test_an_apply_that_waited_applies_the_repo_as_it_is_then(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient, database_url: str
) -> None:
    """The repo is read once the lock is held: an installation added while the apply waited is
    applied too (the repo was once read before the wait, and the apply carried out a stale
    plan)."""
    repo = write_repo(tmp_path / "lab", {"a": slow_app(0)})
    with Store(database_url) as store:
        with store.apply_lock("nebulad", lambda _: None):
            waiting = start_apply(repo, docker_host, database_url, tmp_path / "c1")
            assert waiting.stderr is not None
            said = waiting.stderr.readline()
            assert "waiting for nebulad (pid" in said, said
            (repo / "packages" / "b.yaml").write_text(slow_app(0))
        out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
    assert running(engine) == {"a-app", "b-app"}


def test_nebulad_waiting_for_the_apply_lock_says_so_and_stops_at_once(
    short_tmp: Path, docker_host: str, engine: docker.DockerClient, database_url: str
) -> None:
    """nebulad waits for the lock an apply holds, logging whose it is; asked to stop meanwhile,
    it stops at once (it once waited in a call nothing could interrupt, for as long as the
    apply held the lock)."""
    repo = Repo(short_tmp)
    repo.push("first", {"nebula.yaml": NEBULA_YAML, "packages/one.yaml": slow_app(0)})
    nebulad = Nebulad(repo.bare, short_tmp / "data", docker_host, "--database-url", database_url)
    with Store(database_url) as store, store.apply_lock("nebula apply", lambda _: None):
        nebulad.start()
        try:
            nebulad.wait_ready()
            said = f"waiting for nebula apply (pid {os.getpid()}), which is applying, to finish"
            eventually(lambda: said in nebulad.log.read_text(), 30, "said", nebulad.tail)
        finally:
            started = time.monotonic()
            nebulad.stop()
            took = time.monotonic() - started
        assert nebulad.proc is not None and nebulad.proc.returncode == 0, nebulad.tail()
        assert took < 10, took
    assert running(engine) == set()  # it applied nothing without the lock


# -- syncs whose end the store refused -------------------------------------------------------

REFUSE_SYNC_END = """
CREATE FUNCTION refuse_sync_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;
CREATE TRIGGER refuse_sync_end BEFORE UPDATE ON syncs FOR EACH ROW
WHEN (OLD.status = 'running') EXECUTE FUNCTION refuse_sync_end();
"""


def execute(url: str, sql: str) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(sql)
    finally:
        engine.dispose()


def test_a_sync_whose_end_the_store_refused_is_closed_and_only_that_one(
    short_tmp: Path, docker_host: str, engine: docker.DockerClient, pg_url: str
) -> None:
    """The store refuses to close syncs (a full disk under PostgreSQL, for that one write) while
    a poll applies a commit: once it accepts writes again, nebulad closes each sync it left
    `running` as failed, and leaves alone a sync another node sharing the store has running."""
    with servers.fresh_database(pg_url) as url:
        repo = Repo(short_tmp)
        repo.push("first", {"nebula.yaml": NEBULA_YAML, "packages/one.yaml": slow_app(0)})
        options = ("--poll-interval", "2s", "--drift-interval", "3s", "--database-url", url)
        nebulad = Nebulad(repo.bare, short_tmp / "data", docker_host, *options)
        nebulad.start()
        try:
            nebulad.wait_ready()
            eventually(lambda: nebulad.status()["applied_commit"] is not None, 60, "first sync")
            with Store(url) as store:
                other = store.start_sync(commit=None, author=None, message=None, trigger="poll")
            execute(url, REFUSE_SYNC_END)
            sha = repo.push("add two", {"packages/two.yaml": slow_app(0)})
            eventually(lambda: "two-app" in running(engine), 60, "applied", nebulad.tail)
            eventually(lambda: "sync" in nebulad.status()["faults"], 30, "refused", nebulad.tail)
            assert nebulad.status()["applied_commit"] != sha
            code, record = sync_now(nebulad, timeout=60)  # asked for: answered, though refused
            assert (code, record["status"]) == (1, "failed"), record
            execute(url, "DROP TRIGGER refuse_sync_end ON syncs")
            eventually(lambda: nebulad.status()["applied_commit"] == sha, 60, "recorded")
            eventually(lambda: nebulad.status()["faults"] == {}, 30, "recovered", nebulad.tail)
            syncs = {s["id"]: s for s in nebulad_syncs(nebulad)}
        finally:
            nebulad.stop()
    assert syncs[other]["status"] == "running"  # another node's: not ours to close
    assert [s for s in syncs.values() if s["status"] == "running"] == [syncs[other]]
    closed = [s for s in syncs.values() if s["errors"] and "could not record" in s["errors"][0]]
    assert closed and all(s["status"] == "failed" for s in closed), syncs


# -- health faults ---------------------------------------------------------------------------


def test_one_check_that_cannot_be_recorded_stays_a_fault_while_another_passes(
    tmp_path: Path, pg_url: str
) -> None:
    """Check `bad`'s result row is locked by someone else (its writes time out), `good`'s is
    not: the `health` fault names `bad` and stays, however often `good` passes in between (it
    once flapped, cleared by every pass); it clears once `bad` is recorded again."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    check = f"health_checks: [{{name: port, tcp: '127.0.0.1:{port}', interval: 1s}}]\n"
    inline = f"compose:\n  services:\n    app: {{image: {IMAGE}}}\n{check}"
    lab = write_repo(tmp_path / "lab", {"bad": inline, "good": inline})
    desired = load_desired(lab)
    with (
        servers.fresh_database(pg_url) as url,
        Store(f"{url}?options=-c%20lock_timeout%3D1000") as store,
    ):
        faults = Faults()
        monitor = HealthMonitor(store, DockerProvider("unix:///nonexistent"), EventBus(), faults)
        monitor.start()
        try:
            for inst in desired.installations:  # deployed: the monitor checks only those
                deployment = store.begin_deployment(
                    inst.name, package=None, version=None, config={}, spec_hash="", summary=""
                )
                store.finish_deployment(deployment, ok=True, reason=None, container_ids=[])
            monitor.watch(desired.installations)
            eventually(lambda: len(installation_runs.health(store)) == 2, 20, "first results")
            locker = sqlalchemy.create_engine(url, poolclass=NullPool)
            with locker.begin() as connection:
                connection.exec_driver_sql(
                    "SELECT * FROM health_results WHERE installation = 'bad' FOR UPDATE"
                )
                eventually(lambda: "health" in faults.current(), 20, "the fault")
                seen = []
                deadline = time.monotonic() + 8  # `good` passes every second meanwhile
                while time.monotonic() < deadline:
                    seen.append(faults.current().get("health"))
                    time.sleep(0.1)
            locker.dispose()
            assert all(s is not None and s.startswith("checks bad/port: ") for s in seen), seen
            eventually(lambda: "health" not in faults.current(), 20, "cleared")
        finally:
            monitor.stop()
            listener.close()


class SlowToClear(Faults):
    """Faults whose clearing takes a while: a report made meanwhile must not be lost."""

    def clear(self, part: str) -> None:
        time.sleep(0.5)
        super().clear(part)


def test_a_late_clear_never_erases_a_newer_health_fault(tmp_path: Path) -> None:
    """Check a/x is recorded again (its fault clears) just as check b/y cannot be: the fault
    stays, naming b/y (the clear once ran after the lock, and erased b/y's newer report)."""
    faults = SlowToClear()
    with Store(f"sqlite:///{tmp_path / 'nebula.db'}") as store:
        provider = DockerProvider("unix:///nonexistent")
        monitor = HealthMonitor(store, provider, EventBus(), faults)
        monitor._fault(("a", "x"), OSError("No space left on device"))
        clearing = threading.Thread(target=monitor._fault, args=(("a", "x"), None))
        clearing.start()
        time.sleep(0.2)  # a/x is being cleared
        monitor._fault(("b", "y"), OSError("No space left on device"))
        clearing.join()
    assert faults.current().get("health", "").startswith("checks b/y: "), faults.current()


# -- keeping threads running -----------------------------------------------------------------


def test_a_loop_that_ran_well_restarts_after_the_first_pause_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(faults_module, "RESTART_FIRST", 0.05)
    monkeypatch.setattr(faults_module, "RESTART_MAX", 0.8)
    starts: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        starts.append(time.monotonic())
        if len(starts) == 4:
            time.sleep(1.0)  # runs well for a while (pauses so far: 0.05, 0.1, 0.2)
        if len(starts) == 6:
            stop.set()
        raise RuntimeError("broken")

    Faults().keep_running("test", loop, stop)
    assert len(starts) == 6
    pauses = [b - a for a, b in itertools.pairwise(starts)]
    assert pauses[3] > 1.0  # the long run
    assert pauses[4] < 0.2, pauses  # the first pause again (not 0.8)


# -- Docker events and reads -----------------------------------------------------------------


def test_losing_the_engine_is_reported_by_the_event_follower(tmp_path: Path) -> None:
    provider = DockerProvider(f"unix://{tmp_path}/docker.sock")  # no engine there
    stop = threading.Event()
    lost: list[ProviderError] = []

    def report(exc: ProviderError) -> None:
        lost.append(exc)
        if len(lost) == 2:
            stop.set()

    follower = threading.Thread(target=provider.follow, args=(lambda *_: None, stop, report))
    follower.start()
    follower.join(10)
    assert not follower.is_alive() and len(lost) == 2  # reported, and tried again
    assert "cannot connect" in str(lost[0]) and str(tmp_path) in str(lost[0])


def test_an_error_handling_an_event_is_raised_not_swallowed(
    docker_host: str, engine: docker.DockerClient
) -> None:
    provider = DockerProvider(docker_host)
    stop = threading.Event()
    raised: list[BaseException] = []

    def on_event(event: ContainerEvent) -> None:
        raise ValueError(f"cannot handle {event.action} of {event.name}")

    def follow() -> None:
        try:
            provider.follow(on_event, stop, lambda _exc: None)
        except ValueError as exc:
            raised.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        time.sleep(1.0)  # subscribed
        engine.containers.create(IMAGE, labels={"io.nebula.managed": "true"}, name="ev-app")
        follower.join(20)
        assert not follower.is_alive() and [str(e) for e in raised] == [
            "cannot handle create of ev-app"
        ]
    finally:
        stop.set()
        provider.close()


def test_a_read_that_times_out_is_not_tried_again(docker_host: str) -> None:
    """A hung engine (dockerd stopped) answers no read: the read fails after its timeout, once
    (it was tried again on a new connection, waiting twice as long)."""
    if os.environ.get("NEBULA_TEST_DOCKER_HOST"):
        pytest.skip("stops the private dockerd")
    pid = int((Path(urlsplit(docker_host).path).parent / "docker.pid").read_text())
    reader = EngineReader(docker_host, timeout=1.5)
    assert reader.get("/version")["ApiVersion"]  # a kept-alive connection to reuse
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ProviderError, match="timed out"):
            reader.get("/version")
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
        reader.close()
    assert 1.4 < took < 2.5, took
