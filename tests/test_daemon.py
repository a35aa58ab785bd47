"""The daemon loop against real git repos and a real Docker Engine (driven in-process)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

import servers
from nebula.daemon.config import DaemonConfig
from nebula.daemon.control import ControlError
from nebula.daemon.core import Daemon
from nebula.daemon.gitsync import GitSource
from nebula.providers.docker import DockerProvider
from nebula.store import Store

IMAGE = "nebula-example/busybox:1"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}


def app(name: str) -> str:
    return f"compose:\n  services:\n    {name}:\n      image: {IMAGE}\n      init: true\n      restart: unless-stopped\n"


class Repo:
    """A bare repo (the daemon's source) and a working clone a person commits and pushes from."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "homelab.git"
        self.work = root / "work"
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        self.git("clone", "-q", str(self.bare), str(self.work), cwd=root)
        self.git("checkout", "-q", "-b", "main")
        (self.work / "packages").mkdir()
        (self.work / "nebula.yaml").write_text("defaults: {health_timeout: 30s}\n")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.work,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip()

    def push(self, message: str, files: dict[str, str | None]) -> str:
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


@pytest.fixture
def engine(docker_host: str, test_image: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    client.images.get(test_image).tag(IMAGE)
    yield client
    for container in client.containers.list(all=True, filters={"label": "io.nebula.managed=true"}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": "io.nebula.managed=true"}):
        network.remove()
    client.close()


@pytest.fixture
def lab(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> Iterator[tuple[Repo, Daemon]]:
    repo = Repo(tmp_path)
    repo.push(
        "first",
        {"nebula.yaml": "defaults: {health_timeout: 30s}\n", "packages/web.yaml": app("web")},
    )
    config = DaemonConfig(
        source=str(repo.bare), data_dir=tmp_path / "data", poll_interval=3600, drift_interval=3600
    )
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider(docker_host)
    daemon = Daemon(config, store, provider, GitSource(str(repo.bare), tmp_path / "data" / "repo"))
    daemon.start()
    eventually(
        lambda: running(engine) == {"web-web"} and daemon.status().applied_commit is not None
    )
    yield repo, daemon
    daemon.stop()
    provider.close()
    store.close()


def running(engine: docker.DockerClient) -> set[str]:
    return {
        c.name
        for c in engine.containers.list(
            filters={"label": "io.nebula.managed=true", "status": "running"}
        )
    }


def test_a_push_brings_a_new_installation_up_and_is_recorded(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    repo, daemon = lab
    sha = repo.push("add notes", {"packages/notes.yaml": app("notes")})
    daemon.request_sync("hook")
    eventually(lambda: running(engine) == {"web-web", "notes-notes"})
    eventually(
        lambda: daemon.syncs(1)[0].commit == sha and daemon.syncs(1)[0].status == "succeeded"
    )
    last = daemon.syncs(1)[0]
    assert (last.author, last.message, last.trigger) == ("Ada", "add notes", "hook")
    assert last.summary["create"] == 2  # its network and its container
    assert daemon.status().applied_commit == sha
    notes = {i["name"]: i for i in daemon.installations()}["notes"]
    assert notes["commit"] == sha and notes["status"] == "running"


def test_the_output_of_a_build_is_in_the_sync_record(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    repo, daemon = lab
    (repo.work / "packages" / "site").mkdir()
    dockerfile = f"FROM {IMAGE}\nRUN echo assembling the site\n"
    compose = "compose:\n  services:\n    web: {build: ., init: true, restart: unless-stopped}\n"
    sha = repo.push(
        "add site", {"packages/site.yaml": compose, "packages/site/Dockerfile": dockerfile}
    )
    daemon.request_sync("hook")
    eventually(lambda: daemon.syncs(1)[0].commit == sha and daemon.syncs(1)[0].status != "running")
    last = daemon.syncs(1)[0]
    assert last.status == "succeeded", last.errors
    (built,) = [c for c in last.changes if c["name"] == "site-web"]
    assert "assembling the site" in built["log"]
    assert running(engine) == {"web-web", "site-web"}


def test_a_broken_commit_is_reported_with_file_and_line_and_changes_nothing(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    repo, daemon = lab
    good = daemon.status().applied_commit
    bad = repo.push("typo", {"packages/web.yaml": app("web").replace("image:", "imagee:")})
    daemon.request_sync("hook")
    eventually(lambda: daemon.syncs(1)[0].commit == bad and daemon.syncs(1)[0].status == "failed")
    errors = daemon.syncs(1)[0].errors
    assert any(
        e.startswith("packages/web.yaml:4:7: compose.services.web.imagee: unknown field")
        for e in errors
    )
    assert running(engine) == {"web-web"}
    assert daemon.status().applied_commit == good
    # drift is still corrected against the last good commit
    engine.containers.get("web-web").remove(force=True)
    eventually(lambda: running(engine) == {"web-web"})


def test_a_container_removed_by_hand_is_put_back(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    _, daemon = lab
    engine.containers.get("web-web").remove(force=True)
    eventually(lambda: running(engine) == {"web-web"}, timeout=15)
    # the container runs before the sync that made it ends (health, proxy and DNS steps follow)
    eventually(
        lambda: (daemon.syncs(1)[0].trigger, daemon.syncs(1)[0].status) == ("drift", "succeeded")
    )


def test_a_commit_deleting_everything_is_held_until_approved(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    repo, daemon = lab
    sha = repo.push("remove all", {"packages/web.yaml": None})
    daemon.request_sync("hook")
    eventually(lambda: daemon.syncs(1)[0].status == "held")
    held = daemon.syncs(1)[0]
    assert held.commit == sha
    assert {"action": "delete", "kind": "container", "installation": "web", "name": "web-web",
            "reason": "installation 'web' is no longer in the config repo"} in held.changes  # fmt: skip
    time.sleep(1)
    assert running(engine) == {"web-web"}
    with pytest.raises(ControlError):
        daemon.approve(held.id + 100)
    daemon.approve(held.id)
    eventually(lambda: running(engine) == set())


def test_suspend_stops_applying_and_rollback_pins_an_earlier_commit(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    repo, daemon = lab
    first = daemon.status().applied_commit
    assert first is not None
    daemon.suspend()
    repo.push("add notes", {"packages/notes.yaml": app("notes")})
    daemon.request_sync("hook")
    time.sleep(1.5)
    assert running(engine) == {"web-web"}
    daemon.resume()
    eventually(lambda: running(engine) == {"web-web", "notes-notes"})
    assert daemon.rollback(first[:10]) == first
    eventually(lambda: running(engine) == {"web-web"})
    assert daemon.status().pinned_commit == first
    daemon.resume()
    eventually(lambda: running(engine) == {"web-web", "notes-notes"})


def test_a_change_that_keeps_failing_is_not_retried_in_a_tight_loop(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    import socket

    repo, daemon = lab
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        repo.push(
            "clash",
            {"packages/clash.yaml": app("app") + f"      ports: ['127.0.0.1:{port}:8080']\n"},
        )
        daemon.request_sync("hook")
        eventually(lambda: daemon.syncs(1)[0].status == "failed")
        count = len(daemon.syncs(100))
        time.sleep(2)  # the failed start removed its container: that is not drift
        assert len(daemon.syncs(100)) == count
        assert "address already in use" in daemon.syncs(1)[0].errors[0]


def test_polling_and_a_watched_working_folder(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient
) -> None:
    """Without any hook: the poll finds a pushed commit; --watch applies edits of a folder live."""
    (tmp_path / "git").mkdir()
    repo = Repo(tmp_path / "git")
    repo.push("first", {"nebula.yaml": "", "packages/web.yaml": app("web")})
    folder = tmp_path / "live"
    (folder / "packages").mkdir(parents=True)
    (folder / "nebula.yaml").write_text("")
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    provider = DockerProvider(docker_host)
    polling = Daemon(
        DaemonConfig(
            source=str(repo.bare), data_dir=tmp_path / "a", poll_interval=0.5, drift_interval=0.5
        ),
        store,
        provider,
        GitSource(str(repo.bare), tmp_path / "a" / "repo"),
    )
    polling.start()
    try:
        eventually(lambda: running(engine) == {"web-web"})
        repo.push("add notes", {"packages/notes.yaml": app("notes")})
        eventually(lambda: running(engine) == {"web-web", "notes-notes"})
        assert any(s.trigger == "poll" for s in polling.syncs(5))
    finally:
        polling.stop()
    watching = Daemon(
        DaemonConfig(source=str(folder), watch=True, data_dir=tmp_path / "b", drift_interval=3600),
        Store(f"sqlite:///{tmp_path}/watch.db"),
        provider,
        None,
    )
    watching.start()
    try:
        time.sleep(0.5)
        (folder / "packages" / "live.yaml").write_text(app("live"))
        eventually(lambda: "live-live" in running(engine))
        assert watching.syncs(1)[0].trigger == "watch"
    finally:
        watching.stop()
        provider.close()
        store.close()


def test_a_push_that_leaves_the_containers_as_they_were_does_not_list_the_engine(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push whose commit changes none of the node's installations, after a sync that left
    the engine as planned and no container event since but the daemon's own, leaves the engine
    alone; another event since, or a sync asked for by hand, plans against it again."""
    repo, daemon = lab
    observed: list[str] = []
    observe = daemon.provider.observe
    monkeypatch.setattr(daemon.provider, "observe", lambda: observed.append("x") or observe())

    def synced(trigger: str, sha: str | None = None) -> Callable[[], bool]:
        def done() -> bool:
            last = daemon.syncs(1)[0]
            return (last.trigger, last.status) == (trigger, "succeeded") and (
                sha is None or last.commit == sha
            )

        return done

    for _ in range(2):  # the first may meet the events of the lab's own first apply
        before = len(observed)
        daemon.request_sync("manual")
        eventually(lambda before=before: len(observed) > before and synced("manual")())
    observed.clear()
    sha = repo.push("notes only", {"README.md": "the homelab\n"})
    daemon.request_sync("hook")
    eventually(synced("hook", sha))
    assert observed == []

    seen = daemon.containers.events
    engine.containers.get("web-web").pause()  # an event, though no drift
    engine.containers.get("web-web").unpause()
    eventually(lambda: daemon.containers.events >= seen + 2)  # both have arrived
    sha = repo.push("more notes", {"README.md": "the homelab, again\n"})
    daemon.request_sync("hook")
    eventually(synced("hook", sha))
    assert observed == ["x"]
    sha = repo.push("even more notes", {"README.md": "the homelab, once more\n"})
    daemon.request_sync("hook")
    eventually(synced("hook", sha))
    assert observed == ["x"]  # converged again: left alone

    # The daemon's own replacement of a container is no reason to look again.
    old = engine.containers.get("web-web").id
    sha = repo.push(
        "web, changed", {"packages/web.yaml": app("web") + '      environment: {REV: "2"}\n'}
    )
    daemon.request_sync("hook")
    eventually(synced("hook", sha))
    assert observed == ["x", "x"] and engine.containers.get("web-web").id != old
    time.sleep(1)  # the replacement's events have come
    sha = repo.push("notes again", {"README.md": "the homelab, and more\n"})
    daemon.request_sync("hook")
    eventually(synced("hook", sha))
    assert observed == ["x", "x"]
    daemon.request_sync("manual")
    eventually(lambda: observed == ["x", "x", "x"] and synced("manual")())


def test_requests_arriving_during_a_sync_coalesce(
    lab: tuple[Repo, Daemon], engine: docker.DockerClient
) -> None:
    repo, daemon = lab
    before = daemon.syncs(1)[0].id
    repo.push("add notes", {"packages/notes.yaml": app("notes")})
    for _ in range(25):
        daemon.request_sync("hook")
    eventually(lambda: running(engine) == {"web-web", "notes-notes"})
    time.sleep(1)
    newer = [s for s in daemon.syncs(50) if s.id > before]
    assert 1 <= len(newer) <= 3, [(s.id, s.trigger, s.status) for s in newer]
    assert all(s.status != "running" for s in newer)
