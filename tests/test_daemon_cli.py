"""The daemon's CLI commands against the real API served on a unix socket (and on TCP), and the
post-receive hook in a real bare repo pushed to with a real `git push`.

The daemon behind the API is `FakeControl` from test_daemon_api: our own interface, recording
what it was asked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nebula.cli.app import app
from test_daemon_api import TOKEN, FakeControl, Served, served, short_dir

runner = CliRunner()

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.delenv("NEBULA_DAEMON", raising=False)
    monkeypatch.delenv("NEBULA_TOKEN", raising=False)
    with served(FakeControl()) as api:
        monkeypatch.setenv("NEBULA_SOCKET", str(api.socket))
        yield api


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def run_json(*args: str, code: int = 0) -> object:
    result = runner.invoke(app, [*args, "--output", "json"])
    assert result.exit_code == code, result.stdout + result.stderr
    return json.loads(result.stdout)


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY},
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


# -- sync now | status | history ----------------------------------------------------------------


def test_sync_now_queues_a_manual_sync(daemon: Served) -> None:
    assert "Sync requested" in run("sync", "now")
    assert run_json("sync", "now") == {"ok": True, "queued": True, "trigger": "manual"}
    assert daemon.control.called("request_sync") == ["manual", "manual"]


def test_sync_now_wait_follows_the_sync_and_exits_by_its_status(daemon: Served) -> None:
    daemon.control.add("succeeded")  # an older sync: not the one waited for
    daemon.control.auto_run = True
    out = run("sync", "now", "--wait")
    assert "sync started id=2" in out
    assert "whoami creating" in out
    assert "sync 2  succeeded  (manual, 0.2s)" in out
    assert "plan     1 to create, 0 to update, 0 to delete, 2 unchanged" in out

    daemon.control.finish_as = "failed"
    out = run("sync", "now", "--wait", code=1)
    assert "sync 3  failed" in out
    assert "packages/web.yaml:4:7: compose.services.web.imagee: unknown field" in out
    record = run_json("sync", "now", "--wait", code=1)
    assert isinstance(record, dict)
    assert (record["id"], record["status"], record["trigger"]) == (4, "failed", "manual")
    assert daemon.control.called("request_sync") == ["manual"] * 3


def test_sync_status_shows_the_last_sync_with_file_line_errors(daemon: Served) -> None:
    assert "No sync yet." in run("sync", "status")
    assert run_json("sync", "status") is None
    daemon.control.add(
        "failed",
        commit="0123456789abcdef" * 2 + "01234567",
        message="web: a typo\n\nlong body",
        errors=("packages/web.yaml:4:7: compose.services.web.imagee: unknown field",),
        summary={"create": 0, "update": 0, "delete": 0, "noop": 3},
        duration_ms=1234,
    )
    daemon.control.suspended = True
    out = run("sync", "status")
    assert "nebulad on node1 follows https://git.example/lab.git (main)" in out
    assert "suspended" in out
    assert "sync 1  failed  (poll, 1.2s)" in out
    assert "commit   0123456789ab  web: a typo" in out
    assert "author   Ada Lovelace" in out
    assert "plan     0 to create, 0 to update, 0 to delete, 3 unchanged" in out
    assert "1 error:" in out
    assert "packages/web.yaml:4:7: compose.services.web.imagee: unknown field" in out
    record = run_json("sync", "status")
    assert isinstance(record, dict)
    assert record["errors"] == ["packages/web.yaml:4:7: compose.services.web.imagee: unknown field"]
    assert record["started_at"] == "2025-05-01T12:00:00+00:00"


def test_sync_history_table_and_json(daemon: Served) -> None:
    assert "No sync yet." in run("sync", "history")
    for status in ("succeeded", "failed", "held"):
        errors = ("packages/a.yaml:2:3: image: required",) if status == "failed" else ()
        daemon.control.add(
            status, summary={"create": 1, "update": 0, "delete": 0, "noop": 0}, errors=errors
        )
    records = run_json("sync", "history", "--limit", "2")
    assert isinstance(records, list)
    assert [(r["id"], r["status"]) for r in records] == [(3, "held"), (2, "failed")]
    out = run("sync", "history")
    for text in ("succeeded", "failed", "held", "1 to create", "Ada Lovelace"):
        assert text in out
    assert "1 error: packages/a.yaml:2:3: image: required" in out
    assert daemon.control.called("syncs")[-1] == 20
    run("sync", "history", "--limit", "0", code=2)


# -- suspend, resume, rollback, approve ---------------------------------------------------------


def test_suspend_resume_rollback(daemon: Served) -> None:
    assert "Suspended" in run("suspend")
    assert daemon.control.suspended
    assert run_json("resume") == {"ok": True, "suspended": False}
    assert "Pinned to abc123000000" in run("rollback", "abc123")
    assert daemon.control.pinned == "abc123".ljust(40, "0")
    out = run("rollback", "not-a-sha", code=1)
    assert "'not-a-sha' is not a commit of the config repo" in out
    assert run_json("suspend") == {"ok": True, "suspended": True}


def test_approve_a_held_sync(daemon: Served) -> None:
    daemon.control.add("succeeded")
    daemon.control.add("held", summary={"create": 0, "update": 0, "delete": 3, "noop": 0})
    assert "is not held" in run("approve", "1", code=1)
    assert "no sync 9" in run("approve", "9", code=1)
    assert run_json("approve", "9", code=1) == {"ok": False, "error": "no sync 9"}
    out = run("approve", "2")
    assert "Approved sync 2." in out
    assert "succeeded" in out
    assert daemon.control.called("approve") == [1, 9, 9, 2]


# -- finding the daemon -------------------------------------------------------------------------


def test_no_daemon_running_is_said_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEBULA_DAEMON", raising=False)
    missing = tmp_path / "nebulad.sock"
    monkeypatch.setenv("NEBULA_SOCKET", str(missing))
    expected = (
        f"no nebulad is running (socket {missing}): start it with `nebulad` or "
        "`nebula daemon run`; `nebula apply` still works without it"
    )
    for args in (["sync", "status"], ["sync", "now"], ["suspend"], ["approve", "1"]):
        assert expected in run(*args, code=1)
    assert run_json("sync", "history", code=1) == {"ok": False, "error": expected}
    other = tmp_path / "other.sock"
    assert f"(socket {other})" in run("sync", "status", "--socket", str(other), code=1)


def test_over_tcp_the_token_comes_from_the_environment(
    daemon: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEBULA_DAEMON", daemon.url)
    out = run("sync", "status", code=1)
    assert "refused the request (missing bearer token" in out
    assert "set NEBULA_TOKEN" in out
    monkeypatch.setenv("NEBULA_TOKEN", "wrong")
    assert "invalid bearer token" in run("sync", "now", code=1)
    monkeypatch.setenv("NEBULA_TOKEN", TOKEN)
    assert "Sync requested" in run("sync", "now")
    assert daemon.control.called("request_sync") == ["manual"]


# -- nebula hooks install -----------------------------------------------------------------------


def test_hooks_install_refuses_what_is_not_a_bare_repo(tmp_path: Path) -> None:
    out = run("hooks", "install", str(tmp_path / "missing"), code=2)
    assert "is not a folder" in out
    work = tmp_path / "work"
    git(tmp_path, "init", "--quiet", str(work))
    out = run("hooks", "install", str(work), code=2)
    assert "is not a bare git repository" in out
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "is not a bare git repository" in run("hooks", "install", str(plain), code=2)
    assert not (work / ".git" / "hooks" / "post-receive").exists()


def test_a_push_notifies_the_daemon_once_and_keeps_the_previous_hook(
    daemon: Served, tmp_path: Path
) -> None:
    bare = tmp_path / "lab.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    previous = bare / "hooks" / "post-receive"
    previous.write_text(f'#!/bin/sh\ncat > "{tmp_path}/previous-ran"\n')
    previous.chmod(0o755)

    answer = run_json("hooks", "install", str(bare), "--socket", str(daemon.socket))
    hook = bare / "hooks" / "post-receive"
    assert answer == {
        "ok": True,
        "hook": str(hook),
        "socket": str(daemon.socket),
        "previous": str(bare / "hooks" / "post-receive.nebula-previous"),
    }
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    assert repr(str(daemon.socket)) in hook.read_text()
    # Installing again keeps the chained hook as it was.
    assert "runs first" in run("hooks", "install", str(bare), "--socket", str(daemon.socket))
    assert "cat >" in (bare / "hooks" / "post-receive.nebula-previous").read_text()

    work = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    (work / "nebula.yaml").write_text("nodes: []\n")
    git(work, "add", "nebula.yaml")
    git(work, "commit", "--quiet", "-m", "first")
    pushed = git(work, "push", "origin", "HEAD:main")
    assert "nebula:" not in pushed.stderr, pushed.stderr
    assert daemon.control.called("request_sync") == ["hook"]
    sha = git(work, "rev-parse", "HEAD").stdout.strip()
    assert sha in (tmp_path / "previous-ran").read_text(), "the previous hook got the refs"


def test_a_push_with_no_daemon_running_still_succeeds(tmp_path: Path) -> None:
    bare = tmp_path / "lab.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    with short_dir() as root:
        socket_path = root / "nebulad.sock"  # nothing listens here
        out = run("hooks", "install", str(bare), "--socket", str(socket_path))
        assert f"nebulad ({socket_path})" in out
        work = tmp_path / "work"
        git(tmp_path, "clone", "--quiet", str(bare), str(work))
        (work / "nebula.yaml").write_text("nodes: []\n")
        git(work, "add", "nebula.yaml")
        git(work, "commit", "--quiet", "-m", "first")
        pushed = git(work, "push", "origin", "HEAD:main", check=False)
    assert pushed.returncode == 0, pushed.stderr
    warnings = [line for line in pushed.stderr.splitlines() if "nebula:" in line]
    assert len(warnings) == 1, pushed.stderr
    assert f"no nebulad answered on {socket_path}" in warnings[0]
    assert git(bare, "rev-parse", "main").stdout.strip() == (
        git(work, "rev-parse", "HEAD").stdout.strip()
    )
