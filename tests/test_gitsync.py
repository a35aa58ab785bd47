"""GitSource against real git repos: a bare upstream, and a working clone that commits and pushes."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebula.daemon.gitsync import GitSource, mask_url_secrets
from nebula.errors import SyncError

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config leaks into these tests."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class Upstream:
    """A bare repo at `bare` and a working clone at `work` that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "upstream.git"
        self.work = root / "work"
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(root, "clone", "--quiet", str(self.bare), str(self.work))
        git(self.work, "checkout", "--quiet", "-B", "main")

    def commit(self, message: str, files: dict[str, str | None], branch: str = "main") -> str:
        """Write (or, for None, delete) `files`, commit what is staged, push; return the sha."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                git(self.work, "rm", "--quiet", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            git(self.work, "add", name)
        git(self.work, "commit", "--quiet", "-m", message)
        git(self.work, "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


def source(up: Upstream, tmp_path: Path, *, branch: str = "main", subfolder: str = "") -> GitSource:
    return GitSource(str(up.bare), tmp_path / "daemon", branch=branch, subfolder=subfolder)


def has_object(repo: Path, sha: str) -> bool:
    done = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=repo, check=False)
    return done.returncode == 0


def test_first_fetch_clones_and_reports_the_tip(upstream: Upstream, tmp_path: Path) -> None:
    sha = upstream.commit("Add the cluster file\n\nWith a body.", {"home/nebula.yaml": "a\n"})
    src = source(upstream, tmp_path, subfolder="home")

    tip = src.fetch()

    assert tip.sha == sha
    assert (tip.author, tip.email) == ("Ada Lovelace", "ada@example.org")
    assert tip.message == "Add the cluster file"
    assert tip.time.tzinfo is not None
    assert abs(time.time() - tip.time.timestamp()) < 300
    assert (src.clone_dir / ".git" / "shallow").is_file()  # the first fetch is shallow
    assert src.checked_out() is None  # fetch never moves the tree


def test_a_push_is_seen_by_the_next_fetch(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit("one", {"nebula.yaml": "1\n"})
    src = source(upstream, tmp_path)
    first = src.fetch()
    assert src.fetch() is first  # unchanged: the cached commit

    second = upstream.commit("two", {"nebula.yaml": "2\n"})
    assert src.fetch().sha == second
    assert src.fetch().message == "two"


def test_checkout_moves_the_tree_and_returns_the_subfolder(
    upstream: Upstream, tmp_path: Path
) -> None:
    one = upstream.commit("one", {"home/nebula.yaml": "1\n", "home/packages/a.yaml": "a\n"})
    two = upstream.commit("two", {"home/nebula.yaml": "2\n", "home/packages/a.yaml": None})
    src = source(upstream, tmp_path, subfolder="home")
    src.fetch()

    folder = src.checkout(two)
    assert folder == src.clone_dir / "home"
    assert (folder / "nebula.yaml").read_text() == "2\n"
    assert not (folder / "packages" / "a.yaml").exists()
    assert src.checked_out() == two

    (folder / "nebula.yaml").write_text("edited by hand\n")
    (folder / "stray.yaml").write_text("x\n")
    folder = src.checkout(one)
    assert (folder / "nebula.yaml").read_text() == "1\n"
    assert (folder / "packages" / "a.yaml").read_text() == "a\n"
    assert not (folder / "stray.yaml").exists()  # the tree is exactly the commit
    assert src.checked_out() == one


def test_a_working_repo_given_by_a_relative_path_is_followed(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = upstream.commit("one", {"nebula.yaml": "1\n"})
    monkeypatch.chdir(tmp_path)
    src = GitSource("work", tmp_path / "daemon")
    monkeypatch.chdir("/")
    assert src.fetch().sha == sha
    assert (src.checkout(sha) / "nebula.yaml").read_text() == "1\n"


def test_a_missing_branch_is_a_clear_error(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit("one", {"nebula.yaml": "1\n"})
    with pytest.raises(SyncError, match=r"branch 'prod' not found in .*upstream\.git"):
        source(upstream, tmp_path, branch="prod").fetch()


def test_a_bad_url_is_a_clear_error(tmp_path: Path) -> None:
    src = GitSource(str(tmp_path / "nowhere.git"), tmp_path / "daemon")
    with pytest.raises(SyncError, match=r"cannot fetch 'main' from .*nowhere\.git: fatal: "):
        src.fetch()


def test_a_missing_subfolder_is_a_clear_error(upstream: Upstream, tmp_path: Path) -> None:
    one = upstream.commit("one", {"nebula.yaml": "1\n"})
    two = upstream.commit("two", {"home/nebula.yaml": "1\n"})
    src = source(upstream, tmp_path, subfolder="home")
    src.fetch()
    assert src.checkout(two).is_dir()
    with pytest.raises(SyncError, match=rf"subfolder 'home' does not exist at commit {one[:12]}"):
        src.checkout(one)


def test_a_subfolder_may_not_leave_the_repo(upstream: Upstream, tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="relative path inside the repo"):
        source(upstream, tmp_path, subfolder="../etc")
    (upstream.work / "home").symlink_to(tmp_path)  # a symlink out of the repo
    git(upstream.work, "add", "home")
    sha = upstream.commit("link out", {})
    src = source(upstream, tmp_path, subfolder="home")
    src.fetch()
    with pytest.raises(
        SyncError, match=f"subfolder 'home' leads outside the repo at commit {sha[:12]}"
    ):
        src.checkout(sha)


def test_credentials_in_urls_never_appear_in_errors(tmp_path: Path) -> None:
    token = "ghp_S3cretT0kenValue"
    with socket.socket() as sock:  # a port with nothing listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for url in (
        f"https://x-access-token:{token}@127.0.0.1:{port}/me/homelab.git",
        f"https://{token}@127.0.0.1:{port}/me/homelab.git",
        f"http://u:{token}%21@127.0.0.1:{port}/me/homelab.git",
    ):
        src = GitSource(url, tmp_path / "daemon", timeout=20)
        assert token not in src.display_url and token not in repr(src)
        with pytest.raises(SyncError) as caught:
            src.fetch()
        assert token not in str(caught.value)
        assert "unable to access" in str(caught.value)  # git's reason, still readable

    text = f"fatal: unable to access 'https://ada:{token}@host/x.git/': also {token}"
    assert token not in mask_url_secrets(text, (token,))
    assert mask_url_secrets("ssh://git@host/x.git") == "ssh://git@host/x.git"


def test_a_hanging_remote_times_out_without_leaking_credentials(tmp_path: Path) -> None:
    with socket.socket() as server:  # accepts the connection, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        src = GitSource(f"http://ada:hunter22@127.0.0.1:{port}/x.git", tmp_path / "d", timeout=1)
        started = time.monotonic()
        with pytest.raises(SyncError, match="timed out after 1 s") as caught:
            src.fetch()
    assert time.monotonic() - started < 10
    assert "hunter22" not in str(caught.value)


def test_rollback_to_a_commit_the_shallow_clone_lacks(upstream: Upstream, tmp_path: Path) -> None:
    one = upstream.commit("one", {"nebula.yaml": "1\n"})
    upstream.commit("two", {"nebula.yaml": "2\n"})
    three = upstream.commit("three", {"nebula.yaml": "3\n"})
    src = source(upstream, tmp_path)
    assert src.fetch().sha == three
    assert not has_object(src.clone_dir, one)

    assert src.commit_info(one).message == "one"
    assert (src.checkout(one) / "nebula.yaml").read_text() == "1\n"
    assert src.commit_info(one[:10]).sha == one  # a prefix works once the commit is here


def test_rollback_when_the_server_refuses_a_fetch_by_sha(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Protocol v0 servers only serve advertised tips: the clone is deepened instead.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    one = upstream.commit("one", {"nebula.yaml": "1\n"})
    upstream.commit("two", {"nebula.yaml": "2\n"})
    src = source(upstream, tmp_path)
    src.fetch()
    assert (src.checkout(one) / "nebula.yaml").read_text() == "1\n"


def test_unknown_commits_are_clear_errors(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit("one", {"nebula.yaml": "1\n"})
    src = source(upstream, tmp_path)
    src.fetch()
    with pytest.raises(SyncError, match="commit 0123456789ab not found in"):
        src.checkout("0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(SyncError, match="unknown commit 'abcdef12'"):
        src.commit_info("abcdef12")
    with pytest.raises(SyncError, match="not a commit sha"):
        src.checkout("--upload-pack=touch pwned")


def test_changed_files_lists_what_a_commit_touched(upstream: Upstream, tmp_path: Path) -> None:
    one = upstream.commit(
        "one",
        {
            "README.md": "hi\n",
            "home/nebula.yaml": "1\n",
            "home/packages/a.yaml": "a\n",
            "home/packages/b.yaml": "b\n",
        },
    )
    upstream.commit("two", {"README.md": "hello\n"})
    git(upstream.work, "mv", "home/packages/b.yaml", "home/packages/c.yaml")
    three = upstream.commit("three", {"home/packages/a.yaml": "a2\n", "homework/x.md": "x\n"})
    src = source(upstream, tmp_path, subfolder="home")
    assert src.fetch().sha == three  # shallow: `one` is fetched on demand

    assert src.changed_files(one, three) == [
        "packages/a.yaml",
        "packages/b.yaml",
        "packages/c.yaml",
    ]
    assert src.changed_files(three, three) == []
    whole = GitSource(str(upstream.bare), tmp_path / "whole")
    whole.fetch()
    assert whole.changed_files(one, three) == [
        "README.md",
        "home/packages/a.yaml",
        "home/packages/b.yaml",
        "home/packages/c.yaml",
        "homework/x.md",
    ]


def test_a_force_push_is_followed(upstream: Upstream, tmp_path: Path) -> None:
    upstream.commit("one", {"nebula.yaml": "1\n"})
    src = source(upstream, tmp_path)
    src.fetch()
    git(upstream.work, "commit", "--quiet", "--amend", "-m", "one, rewritten")
    git(upstream.work, "push", "--quiet", "--force", "origin", "HEAD:main")
    tip = src.fetch()
    assert tip.message == "one, rewritten"
    assert (src.checkout(tip.sha) / "nebula.yaml").read_text() == "1\n"


def test_a_clone_left_by_a_killed_daemon_is_recovered(upstream: Upstream, tmp_path: Path) -> None:
    one = upstream.commit("one", {"nebula.yaml": "1\n"})
    src = source(upstream, tmp_path)
    src.checkout(src.fetch().sha)
    two = upstream.commit("two", {"nebula.yaml": "2\n"})
    git_dir = src.clone_dir / ".git"
    for lock in ("index.lock", "shallow.lock", "refs/remotes/origin/main.lock"):
        (git_dir / lock).write_text("")

    restarted = source(upstream, tmp_path)
    assert restarted.checked_out() == one
    assert restarted.fetch().sha == two

    shutil.rmtree(restarted.clone_dir)  # even a clone deleted under a running daemon
    assert restarted.checked_out() is None
    assert restarted.fetch().sha == two
    assert (restarted.checkout(two) / "nebula.yaml").read_text() == "2\n"


def test_git_variables_of_a_calling_hook_are_ignored(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = upstream.commit("one", {"nebula.yaml": "1\n"})
    monkeypatch.setenv("GIT_DIR", str(upstream.bare))  # as in a post-receive hook
    src = source(upstream, tmp_path)
    assert src.fetch().sha == sha
    assert src.checkout(sha).joinpath("nebula.yaml").is_file()


@pytest.fixture
def counted_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, ...]]]:
    calls: list[tuple[str, ...]] = []
    real = GitSource._run

    def run(self: GitSource, *args: str) -> tuple[int, str, str]:
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(GitSource, "_run", run)
    yield calls


def test_an_unchanged_remote_costs_one_git_fetch(
    upstream: Upstream, tmp_path: Path, counted_runs: list[tuple[str, ...]]
) -> None:
    upstream.commit("one", {"nebula.yaml": "1\n"})
    src = source(upstream, tmp_path)
    src.fetch()
    counted_runs.clear()
    src.fetch()
    assert [args[0] for args in counted_runs] == ["fetch"]

    durations = []
    for _ in range(20):
        started = time.perf_counter()
        src.fetch()
        durations.append(time.perf_counter() - started)
    assert statistics.median(durations) < 0.1, durations  # ~10 ms on a quiet machine
