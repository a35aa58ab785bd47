"""Backups of an installation's named volumes with restic, on a real Docker Engine, into a real
restic repository on disk: by hand (`nebula backup`, `nebula restore`) and as a runbook's
actions run by nebulad; restored bytes are checked against the backed-up ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine import backup as backups
from test_daemon import IMAGE, engine, eventually
from test_remediation import start
from test_runbooks_spec import errors_of, runbook
from test_runbooks_spec import write_repo as write_runbooks
from test_secret_refs import write_repo

__all__ = ["engine"]  # the fixture

APP = f"""compose:
  services:
    app:
      image: {IMAGE}
      init: true
      restart: unless-stopped
      command: [sleep, "100000"]
      volumes: [data:/data, cache:/cache]
"""
# known files: text, binary, a nested folder, an empty file and a symlink
WRITE = (
    "mkdir -p /data/sub/deeper && echo hello > /data/a.txt && head -c 200000 /dev/urandom > "
    "/data/sub/blob && : > /data/sub/deeper/empty && ln -s a.txt /data/link && echo c > /cache/c"
)
SUMS = "cd /data && find . -type f -exec sha256sum {} + | sort && readlink link"


@pytest.fixture
def _restic() -> None:
    servers._which("restic", "restic")


def sh(client: docker.DockerClient, command: str, container: str = "notes-app") -> str:
    result = client.containers.get(container).exec_run(["sh", "-c", command])
    assert result.exit_code == 0, result.output
    return str(result.output.decode())


def started_at(client: docker.DockerClient) -> str:
    container = client.containers.get("notes-app")
    assert container.status == "running"
    return str(container.attrs["State"]["StartedAt"])


class Cli:
    def __init__(self, docker_host: str, tmp_path: Path) -> None:
        self.database = ["--database-url", f"sqlite:///{tmp_path}/nebula.db"]
        self.docker = ["--docker-host", docker_host]

    def __call__(self, *args: str, stdin: str | None = None, code: int = 0) -> str:
        options = [*self.database, *(self.docker if args[0] != "secrets" else [])]
        result = CliRunner().invoke(app, [*args, *options], input=stdin)
        output = result.stdout + result.stderr
        assert result.exit_code == code, output
        return output


@pytest.fixture
def nebula(
    tmp_path: Path,
    docker_host: str,
    engine: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
    _restic: None,
) -> Cli:
    """The installation `notes` applied, its volume holding known files; the vault holds the
    repository's password as `restic_pw`."""
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    cli = Cli(docker_host, tmp_path)
    cli("secrets", "init")
    cli("secrets", "set", "restic_pw", stdin="correct horse")
    cli("apply", str(write_repo(tmp_path / "repo", {"notes": APP})), "--yes")
    sh(engine, WRITE)
    return cli


def test_backup_then_restore_by_hand_gives_back_the_same_bytes(
    tmp_path: Path, nebula: Cli, engine: docker.DockerClient
) -> None:
    repository = str(tmp_path / "backups")  # not there yet: the first backup creates it
    where = ["--repository", repository, "--password-secret", "restic_pw"]
    before = sh(engine, SUMS)
    out = nebula("backup", "notes", *where, "--volume", "data", "--tag", "manual")
    assert "initialised the repository" in out and "notes_data" in out
    assert "correct horse" not in out

    listed = nebula("restore", "notes", *where, "--list")
    assert "notes_data" in listed and "notes_cache" not in listed and "manual" in listed

    sh(engine, "rm -rf /data/* && echo stray > /data/stray && echo changed > /cache/c")
    running_since = started_at(engine)
    out = nebula("restore", "notes", *where)
    assert "restored notes: notes_data from" in out
    assert sh(engine, SUMS) == before
    assert sh(engine, "ls /data; cat /cache/c") == "a.txt\nlink\nsub\nchanged\n"  # cache: no backup
    assert started_at(engine) != running_since  # stopped for the restore, and running again


def test_a_wrong_password_is_a_clear_error_and_changes_nothing(
    tmp_path: Path, nebula: Cli, engine: docker.DockerClient
) -> None:
    repository = str(tmp_path / "backups")
    nebula("backup", "notes", "--repository", repository, "--password-secret", "restic_pw")
    sh(engine, "echo edited > /data/a.txt")
    edited = sh(engine, SUMS)
    running_since = started_at(engine)
    nebula("secrets", "set", "wrong_pw", stdin="battery staple")
    wrong = ["--repository", repository, "--password-secret", "wrong_pw"]

    out = nebula("restore", "notes", *wrong, code=1)
    assert "wrong password" in out and repository in out
    assert "battery staple" not in out
    out = nebula("backup", "notes", *wrong, "--stop", code=1)
    assert "wrong password" in out
    assert sh(engine, SUMS) == edited
    assert started_at(engine) == running_since  # never stopped


def test_stop_and_pause_end_with_the_installation_running_also_when_the_backup_fails(
    tmp_path: Path, nebula: Cli, engine: docker.DockerClient
) -> None:
    repository = tmp_path / "backups"
    where = ["--repository", str(repository), "--password-secret", "restic_pw"]
    first = started_at(engine)
    nebula("backup", "notes", *where, "--stop")
    second = started_at(engine)
    assert second != first  # it was stopped for the backup, and runs again
    nebula("backup", "notes", *where, "--pause")
    assert started_at(engine) == second  # paused, not stopped, and running again

    # another restic holds the repository locked: the backup fails once the app is stopped
    env = {"RESTIC_REPOSITORY": str(repository), "RESTIC_PASSWORD": "correct horse"}
    fifo = tmp_path / "new-password"
    subprocess.run(["mkfifo", str(fifo)], check=True)
    holder = subprocess.Popen(
        ["restic", "key", "passwd", "--new-password-file", str(fifo)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: any((repository / "locks").iterdir()))
        out = nebula("backup", "notes", *where, "--stop", code=1)
        assert "locked by another restic process" in out
    finally:
        holder.kill()
        holder.wait()
    assert started_at(engine) != second  # stopped, then started again despite the failure


def test_an_unreachable_repository_is_named_in_the_error(nebula: Cli) -> None:
    where = ["--repository", "rest:http://127.0.0.1:1/", "--password-secret", "restic_pw"]
    out = nebula("backup", "notes", *where, code=1)
    assert "restic repository rest:http://127.0.0.1:1/" in out
    assert "creating it failed too" in out
    out = nebula("restore", "notes", *where, code=1)
    assert "no repository there, or it cannot be reached" in out


RUNBOOKS = {
    "runbooks/backup-blog.yml": """name: backup-blog
trigger: {type: manual}
steps:
  - name: Backup
    action: backup
    params:
      installation: blog
      repository: REPOSITORY
      password: ${secret:restic_pw}
      volumes: [data]
      forget: {keep_last: 1}
""",
    "runbooks/restore-blog.yml": """name: restore-blog
trigger: {type: manual}
steps:
  - name: Restore
    action: restore
    params: {installation: blog, repository: REPOSITORY, password: "${secret:restic_pw}"}
""",
}


@pytest.mark.usefixtures("_restic")
def test_runbooks_back_up_with_retention_and_restore_through_nebulad(
    tmp_path: Path, docker_host: str, engine: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEBULA_SECRET_RESTIC_PW", "correct horse")
    repository = str(tmp_path / "backups")
    runbooks = {name: text.replace("REPOSITORY", repository) for name, text in RUNBOOKS.items()}
    daemon, store = start(tmp_path, docker_host, "defaults: {health_timeout: 30s}\n", APP, runbooks)
    try:
        eventually(lambda: engine.containers.get("blog-app").status == "running", timeout=60)
        sh(engine, WRITE, "blog-app")
        before = sh(engine, SUMS, "blog-app")
        for _ in range(2):
            answer = daemon.remediation.run("backup-blog", {}, "test")
            assert answer["status"] == "succeeded", answer
        output = store.execution(answer["execution"]).step_states["backup"]["output"]
        assert "forgot 1 older snapshot(s)" in output
        kept = backups.snapshots(repository, "correct horse", "blog")
        assert len(kept) == 1 and kept[0].tag("volume") == "blog_data"

        sh(engine, "rm -rf /data/*", "blog-app")
        answer = daemon.remediation.run("restore-blog", {}, "test")
        assert answer["status"] == "succeeded", answer
        eventually(lambda: engine.containers.get("blog-app").status == "running")
        assert sh(engine, SUMS, "blog-app") == before
    finally:
        daemon.stop()
        store.close()


def test_a_password_in_the_repo_or_a_bad_retention_is_refused_at_its_line(tmp_path: Path) -> None:
    steps = (
        "  - name: Backup\n    action: backup\n    params:\n      installation: blog\n"
        "      repository: /srv/backups\n      password: hunter2\n      stop: maybe\n"
        "      forget: {}\n"
    )
    errors = errors_of(write_runbooks(tmp_path, {"backup.yml": runbook(steps)}))
    assert errors[0].startswith("runbooks/backup.yml:9:7: steps[0].params.password: write the ")
    assert "as ${secret:NAME}" in errors[0] and "hunter2" not in " ".join(errors)
    assert any(e.startswith("runbooks/backup.yml:10:7: steps[0].params.stop") for e in errors)
    assert any("forget: give keep_last, keep_daily" in e for e in errors), errors
