"""A project's files as the files API reaches them: listed, read and written inside the
project's folder only, each write committed with its caller as the author."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nebula.daemon.catalog_api import Marketplace
from nebula.daemon.control import ControlError
from nebula.daemon.projects import ProjectDesk
from nebula.engine import configrepo
from nebula.engine.catalog_edits import RepoEdit
from nebula.engine.configrepo import Author
from nebula.engine.load import load_desired
from nebula.engine.project_files import (
    MAX_FILE_BYTES,
    FileEntry,
    ProjectFileError,
    ProjectFiles,
    clean_path,
)
from nebula.engine.projects import ProjectService
from nebula.errors import ConfigError
from nebula.store import Store


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.test",
    }
    done = subprocess.run(
        ["git", "-C", str(root), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A config repo with a project in projects/site and a secret beside the repo."""
    root = tmp_path / "repo"
    site = root / "projects" / "site"
    (site / "static").mkdir(parents=True)
    (site / "Dockerfile").write_text("FROM scratch\n")
    (site / "static" / "index.html").write_text("<h1>hi</h1>\n")
    (site / "run.sh").write_text("#!/bin/sh\n")
    (site / "run.sh").chmod(0o755)
    (root / "nebula.yaml").write_text("defaults: {}\n")
    (tmp_path / "secret.txt").write_text("the neighbour's secret\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def site(repo: Path) -> ProjectFiles:
    return ProjectFiles(repo, "projects/site")


def refused(action: object, reason: str, match: str) -> None:
    with pytest.raises(ProjectFileError, match=match) as caught:
        action()  # type: ignore[operator]
    assert caught.value.reason == reason


def test_lists_reads_and_writes_the_projects_files(repo: Path) -> None:
    files = site(repo)
    assert files.list().files == [
        FileEntry("Dockerfile", 13, "file"),
        FileEntry("run.sh", 10, "file"),
        FileEntry("static/index.html", 12, "file"),
    ]
    assert files.read("static/index.html") == b"<h1>hi</h1>\n"
    assert files.read("./static//index.html") == b"<h1>hi</h1>\n"
    assert files.write("static/new/page.html", b"<p>new</p>") == "static/new/page.html"
    assert (repo / "projects/site/static/new/page.html").read_bytes() == b"<p>new</p>"
    files.write("run.sh", b"#!/bin/sh\necho hi\n")  # an existing file keeps its mode
    assert (repo / "projects/site/run.sh").stat().st_mode & 0o777 == 0o755
    assert not [p for p in (repo / "projects/site").rglob(".nebula-write-*")]


def test_the_whole_work_tree_is_a_project_without_gits_own_files(repo: Path) -> None:
    paths = [entry.path for entry in ProjectFiles(repo).list().files]
    assert "nebula.yaml" in paths and "projects/site/Dockerfile" in paths
    assert not [p for p in paths if p.startswith(".git")]


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("", "give the file's path"),
        ("../../secret.txt", r"`\.\.` would leave the project"),
        ("static/../../other/x", r"`\.\.` would leave the project"),
        ("/etc/passwd", "an absolute path"),
        ("static/\0index.html", "NUL byte"),
        (".git/hooks/pre-commit", "git's own files"),
        ("static/.git/config", "git's own files"),
        (".", "names the project's folder"),
        ("a" * 1025, "longer than 1024"),
    ],
)
def test_paths_outside_the_grammar_are_refused_before_any_file_is_touched(
    repo: Path, path: str, match: str
) -> None:
    files = site(repo)
    refused(lambda: files.read(path), "invalid", match)
    refused(lambda: files.write(path, b"x"), "invalid", match)
    refused(lambda: clean_path(path), "invalid", match)
    assert git(repo, "status", "--porcelain") == ""


def test_symlinks_leading_out_of_the_project_are_refused(repo: Path, tmp_path: Path) -> None:
    project = repo / "projects" / "site"
    (project / "leak").symlink_to(tmp_path / "secret.txt")
    (project / "up").symlink_to("../..")  # the config repo's root: outside the project
    (project / "alias.html").symlink_to("static/index.html")  # inside: fine to read
    files = site(repo)
    refused(lambda: files.read("leak"), "invalid", "a symlink that leads outside the project")
    refused(lambda: files.read("up/nebula.yaml"), "invalid", "leads outside the project")
    refused(lambda: files.read("up/nothing-here"), "invalid", "leads outside the project")
    assert files.read("alias.html") == b"<h1>hi</h1>\n"
    listed = {e.path: e.kind for e in files.list().files}
    assert listed["leak"] == listed["up"] == listed["alias.html"] == "symlink"
    assert "up/nebula.yaml" not in listed  # a link to a folder is listed, never walked


def test_no_write_goes_through_a_symlink_inside_the_project_or_not(
    repo: Path, tmp_path: Path
) -> None:
    project = repo / "projects" / "site"
    (project / "leak").symlink_to(tmp_path / "secret.txt")
    (project / "out").symlink_to(tmp_path)
    (project / "alias.html").symlink_to("static/index.html")
    (project / "docs").symlink_to("static")
    files = site(repo)
    refused(lambda: files.write("leak", b"x"), "invalid", "leak is a symlink")
    refused(lambda: files.write("out/secret.txt", b"x"), "invalid", "out is a symlink")
    refused(lambda: files.write("out/new.txt", b"x"), "invalid", "out is a symlink")
    refused(lambda: files.write("alias.html", b"x"), "invalid", "alias.html is a symlink")
    refused(lambda: files.write("docs/index.html", b"x"), "invalid", "docs is a symlink")
    assert (tmp_path / "secret.txt").read_text() == "the neighbour's secret\n"
    assert not (tmp_path / "new.txt").exists()
    assert (project / "static/index.html").read_text() == "<h1>hi</h1>\n"


def test_a_project_folder_that_leads_out_of_the_repo_is_refused(repo: Path, tmp_path: Path) -> None:
    (repo / "projects" / "elsewhere").symlink_to(tmp_path)
    elsewhere = ProjectFiles(repo, "projects/elsewhere")
    refused(lambda: elsewhere.read("secret.txt"), "invalid", "resolves outside|leads outside")
    refused(elsewhere.list, "invalid", "the project's folder projects/elsewhere")
    refused(ProjectFiles(repo, "projects/gone").list, "not_found", "projects/gone is not")


def test_missing_files_folders_and_special_files(repo: Path) -> None:
    files = site(repo)
    refused(lambda: files.read("nope.txt"), "not_found", "nope.txt: no such file")
    refused(lambda: files.read("static"), "invalid", "not a regular file")
    refused(lambda: files.write("static", b"x"), "conflict", "not a regular file")
    refused(lambda: files.write("Dockerfile/x", b"x"), "conflict", "Dockerfile is a file")
    os.mkfifo(repo / "projects/site/pipe")
    refused(lambda: files.read("pipe"), "invalid", "not a regular file")


def test_files_over_the_limit_are_neither_read_nor_written(repo: Path) -> None:
    files = site(repo)
    (repo / "projects/site/big.bin").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    refused(lambda: files.read("big.bin"), "invalid", "over the 524,288")
    refused(lambda: files.write("big2.bin", b"x" * (MAX_FILE_BYTES + 1)), "invalid", "over the")
    assert not (repo / "projects/site/big2.bin").exists()
    assert files.write("max.bin", b"x" * MAX_FILE_BYTES) == "max.bin"


def test_a_write_is_a_commit_with_the_caller_as_its_author(repo: Path) -> None:
    rel = "projects/site/" + site(repo).write("static/index.html", b"<h1>new</h1>\n")
    sha = configrepo.commit_paths(
        repo, [rel], "Edit static/index.html of site", Author.of("user:alice")
    )
    assert git(repo, "log", "-1", "--format=%H|%an|%ae|%s") == (
        f"{sha}|alice|user-alice@nebula.invalid|Edit static/index.html of site"
    )
    assert git(repo, "show", f"{sha}:{rel}") == "<h1>new</h1>"
    assert git(repo, "show", "--name-only", "--format=", sha) == rel
    assert git(repo, "status", "--porcelain") == ""


def test_authors_are_derived_from_every_kind_of_caller() -> None:
    assert Author.of("user:alice") == Author("alice", "user-alice@nebula.invalid")
    assert Author.of("key:ci") == Author("key:ci", "key-ci@nebula.invalid")
    assert str(Author.of("uid:1000 (ada)")) == "uid:1000 (ada) <uid-1000-ada@nebula.invalid>"
    assert Author.of("user:<x>\nEvil") == Author("xEvil", "user-x-Evil@nebula.invalid")


def test_a_write_over_uncommitted_changes_is_refused(repo: Path) -> None:
    (repo / "projects/site/Dockerfile").write_text("FROM scratch\n# mine\n")
    with pytest.raises(configrepo.ConfigRepoError, match="uncommitted changes in the way"):
        configrepo.check_clean(repo, ["projects/site/Dockerfile"])


def test_an_edit_is_checked_in_a_repo_whose_project_links_to_a_folder_above(repo: Path) -> None:
    """The edited copy keeps links as links: one to the repo's root does not recurse."""
    (repo / "projects" / "site" / "up").symlink_to("../..")
    edit = RepoEdit({"packages/x.yaml": "package: nope\n"})
    with pytest.raises(ConfigError, match=r"packages/x\.yaml"):
        edit.check(repo)


def test_in_watch_mode_a_folder_projects_files_are_committed_in_the_followed_folder(
    tmp_path: Path,
) -> None:
    """nebulad following a local work tree: reads and writes go to it, committed there."""
    root = tmp_path / "homelab"
    (root / "apps" / "site").mkdir(parents=True)
    (root / "apps" / "site" / "index.html").write_text("old\n")
    (root / "nebula.yaml").write_text("defaults: {}\n")
    (root / "projects").mkdir()
    (root / "projects" / "site.yaml").write_text(
        "name: site\npath: apps/site\nenvironments: {production: {}}\n"
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    synced: list[bool] = []
    marketplace = Marketplace(store, None, root, lambda: synced.append(True))
    desired = load_desired(root)

    def no_service() -> ProjectService:
        raise AssertionError("files and declarations need no deployments")

    desk = ProjectDesk(
        marketplace, None, root, tmp_path / "data", lambda: desired, service=no_service
    )
    assert desk.read("site", "index.html", None)["content"] == "old\n"
    done = desk.write("site", "index.html", b"new\n", "user:ada")
    assert done["commit"] == git(root, "rev-parse", "HEAD") and synced == [True]
    assert git(root, "log", "-1", "--format=%an <%ae>|%s") == (
        "ada <user-ada@nebula.invalid>|Edit index.html of project site"
    )
    assert (root / "apps/site/index.html").read_text() == "new\n"
    with pytest.raises(ProjectFileError, match="would leave the project"):
        desk.write("site", "../../nebula.yaml", b"x", "user:ada")
    (root / "apps/site/index.html").write_text("mine, uncommitted\n")
    with pytest.raises(ControlError, match="uncommitted changes in the way"):
        desk.write("site", "index.html", b"theirs\n", "user:ada")
    store.close()
