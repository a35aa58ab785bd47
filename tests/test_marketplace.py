"""Installing, upgrading and uninstalling packages the GitOps way: dependencies resolved from the
catalog, files written and committed to a real git repo, applied on a real Docker Engine."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import httpx
import pytest
import yaml
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.errors import ConfigError
from nebula.spec.repo import load_repo

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}

# A key-value "database" and an app that needs it: at start the app fetches a file from the
# database over the network it shares with it, so it starts only if kv runs and is reachable.
KV = """\
name: kv
version: "{version}"
description: a tiny key-value store
category: data
compose:
  services:
    kv:
      image: nebula-test/kv:{version}
      init: true
      command: ["sh", "-c", "mkdir -p /data/www && echo ok-$$KV_TOKEN > /data/www/ok && httpd -f -p 80 -h /data/www"]
      environment:
        KV_TOKEN: ${{KV_TOKEN}}
      volumes:
        - data:/data
      healthcheck:
        test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/ok"]
        interval: 1s
        retries: 30
  volumes:
    data: {{}}
variables:
  - name: KV_TOKEN
    description: the token clients present
    secret: true
    required: true
provides:
  service: kv
  values:
    PORT: "80"
    TOKEN: ${{KV_TOKEN}}
"""

APP = """\
name: notes
version: "{version}"
description: notes that keep their data in kv
category: files
requires:
  - package: kv
    version: ">=1,<3"
    prefix: DB
compose:
  services:
    notes:
      image: nebula-test/notes:{version}
      init: true
      command: ["sh", "-c", "wget -q -O /www/db http://$$DB_HOST:$$DB_PORT/ok && httpd -f -p 8080 -h /www"]
      environment:
        DB_HOST: ${{DB_HOST}}
        DB_PORT: ${{DB_PORT}}
        DB_TOKEN: ${{DB_TOKEN}}
        TITLE: ${{TITLE}}
      healthcheck:
        test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/db"]
        interval: 1s
        retries: 30
variables:
  - name: TITLE
    required: true
hooks:
  pre_upgrade: ['echo "pre_upgrade to {version} from $$NEBULA_FROM_VERSION" >> {marks}']
  post_upgrade: ['echo "post_upgrade to {version}" >> {marks}']
"""

runner = CliRunner()


@pytest.fixture
def homelab(
    tmp_path: Path, docker_host: str, test_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A config repo (a git work tree) with its own catalog: kv 1 and 2, notes 1.0 and 1.1."""
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    image = engine.images.get(test_image)
    for tag in (
        "nebula-test/kv:1",
        "nebula-test/kv:2",
        "nebula-test/notes:1.0",
        "nebula-test/notes:1.1",
    ):
        image.tag(tag)
    root = tmp_path / "homelab"
    for version in ("1", "2"):
        write(root / "catalog" / "kv" / f"{version}.yaml", KV.format(version=version))
    for version in ("1.0", "1.1"):
        write(
            root / "catalog" / "notes" / f"{version}.yaml",
            APP.format(version=version, marks=tmp_path / "marks"),
        )
    write(root / "nebula.yaml", "defaults: {health_timeout: 60s}\n")
    (root / "packages").mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    monkeypatch.setenv("NEBULA_DOCKER_HOST", docker_host)
    monkeypatch.setenv("NEBULA_DATABASE_URL", f"sqlite:///{tmp_path}/nebula.db")
    monkeypatch.setenv("NEBULA_SOCKET", str(tmp_path / "no-daemon.sock"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    engine.close()
    yield root  # conftest leaves the engine empty afterwards


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def nebula(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def running(docker_host: str) -> dict[str, str]:
    """Running managed containers -> image."""
    with closing(
        docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    ) as engine:
        return {
            c.name: c.attrs["Config"]["Image"]
            for c in engine.containers.list(filters={"label": "io.nebula.managed=true"})
        }


def test_install_adds_the_dependency_first_commits_and_applies(
    homelab: Path, docker_host: str
) -> None:
    out = nebula("install", "notes", "--repo", str(homelab), "--set", "TITLE=Shopping")
    assert "+ packages/kv.yaml: kv 2 (required by notes)" in out
    assert "+ packages/notes.yaml: notes 1.1" in out
    assert "kv.kv_token: stored in the vault" in out
    assert "No nebulad is running: applying here." in out

    assert git(homelab, "log", "-1", "--format=%s") == "Install notes (notes 1.1) with kv 2"
    assert git(homelab, "status", "--porcelain") == ""
    kv = yaml.safe_load((homelab / "packages" / "kv.yaml").read_text())
    assert kv == {"package": "kv", "version": "2", "values": {"KV_TOKEN": "${secret:kv.kv_token}"}}
    notes = yaml.safe_load((homelab / "packages" / "notes.yaml").read_text())
    assert notes == {"package": "notes", "version": "1.1", "values": {"TITLE": "Shopping"}}
    # notes started only because it reached kv by name over kv's network, with kv's token
    assert running(docker_host) == {
        "kv-kv": "nebula-test/kv:2",
        "notes-notes": "nebula-test/notes:1.1",
    }
    with closing(
        docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    ) as engine:
        fetched = engine.containers.get("notes-notes").exec_run(["cat", "/www/db"]).output.decode()
    assert fetched.startswith("ok-") and len(fetched.strip()) > 10
    assert (homelab / "packages" / "notes.yaml").read_text().count("secret") == 0

    # the dependency alone cannot go; the dependant can, and then the dependency
    out = nebula("uninstall", "kv", "--repo", str(homelab), code=1)
    assert "cannot uninstall kv: notes depends on it; uninstall that first" in out
    assert (homelab / "packages" / "kv.yaml").exists()
    nebula("uninstall", "notes", "--repo", str(homelab))
    assert git(homelab, "log", "-1", "--format=%s") == "Uninstall notes"
    assert running(docker_host) == {"kv-kv": "nebula-test/kv:2"}
    out = nebula("uninstall", "kv", "--purge", "--repo", str(homelab))
    assert "- volume kv_data" in out
    assert running(docker_host) == {}
    with closing(
        docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    ) as engine:
        assert not engine.volumes.list(filters={"label": "io.nebula.managed=true"})


def test_dry_run_shows_the_plan_and_changes_nothing(homelab: Path, docker_host: str) -> None:
    head = git(homelab, "rev-parse", "HEAD")
    out = nebula("install", "notes", "--repo", str(homelab), "--set", "TITLE=x", "--dry-run")
    assert "Would commit: Install notes (notes 1.1) with kv 2" in out
    assert "+ create  kv" in out and "+ create  notes" in out
    assert git(homelab, "rev-parse", "HEAD") == head
    assert list((homelab / "packages").iterdir()) == []
    assert running(docker_host) == {}


def test_missing_required_value_is_asked_for_by_name_when_not_interactive(homelab: Path) -> None:
    out = nebula("install", "notes", "--repo", str(homelab), code=1)
    assert "notes needs TITLE: give it with --set TITLE=VALUE" in out
    out = nebula("install", "notes", "--repo", str(homelab), "--set", "TITEL=x", code=1)
    assert "notes has no variable TITEL (its variables: TITLE)" in out
    out = nebula("install", "nots", "--repo", str(homelab), code=1)
    assert "no package 'nots' in the catalog (did you mean notes?)" in out
    assert list((homelab / "packages").iterdir()) == []


def test_upgrade_pins_the_new_version_and_a_revert_rolls_it_back(
    homelab: Path, docker_host: str
) -> None:
    nebula("install", "notes", "--repo", str(homelab), "--set", "TITLE=x", "--version", "1.0")
    assert running(docker_host)["notes-notes"] == "nebula-test/notes:1.0"
    kv_before = running(docker_host)["kv-kv"]

    out = nebula("upgrade", "notes", "--repo", str(homelab), "--dry-run")
    assert "notes: 1.0 → 1.1" in out
    assert "nebula-test/notes:1.0 → nebula-test/notes:1.1" in out
    out = nebula("upgrade", "notes", "--repo", str(homelab))
    assert git(homelab, "log", "-1", "--format=%s") == "Upgrade notes (notes) 1.0 → 1.1"
    assert 'version: "1.1"' in (homelab / "packages" / "notes.yaml").read_text()
    assert running(docker_host) == {"kv-kv": kv_before, "notes-notes": "nebula-test/notes:1.1"}
    marks = homelab.parent / "marks"
    assert marks.read_text() == "pre_upgrade to 1.1 from 1.0\npost_upgrade to 1.1\n"
    nebula("upgrade", "notes", "--repo", str(homelab), code=1)  # at the newest already

    git(homelab, "revert", "--no-edit", "HEAD")
    out = nebula("plan", str(homelab))
    assert "nebula-test/notes:1.1 → nebula-test/notes:1.0" in out
    nebula("apply", str(homelab), "--yes")
    assert running(docker_host)["notes-notes"] == "nebula-test/notes:1.0"
    assert marks.read_text().splitlines()[2:] == [
        "pre_upgrade to 1.0 from 1.1",  # a rollback runs the hooks of the version it goes to
        "post_upgrade to 1.0",
    ]

    out = nebula("upgrade", "notes", "--to", "9.9", "--repo", str(homelab), code=1)
    assert "notes has no version '9.9' (available: 1.0, 1.1)" in out


def test_json_output_reports_the_commit_and_the_apply(homelab: Path) -> None:
    result = runner.invoke(
        app, ["install", "kv", "--repo", str(homelab), "--set", "KV_TOKEN=t0k3n", "-o", "json"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["message"] == "Install kv (kv 2)"
    assert report["commit"] == git(homelab, "rev-parse", "HEAD")
    assert report["pushed_to"] is None
    assert [i["name"] for i in report["apply"]["installations"]] == ["kv"]
    assert "t0k3n" not in result.stdout + result.stderr


# -- dependency rules, checked by validation whatever wrote the files ---------------------------


def validate(root: Path) -> list[str]:
    from nebula.engine.load import load_desired

    try:
        load_desired(root)
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return []


def repo_with(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for version in ("1", "2"):
        write(root / "catalog" / "kv" / f"{version}.yaml", KV.format(version=version))
    write(root / "catalog" / "notes" / "1.0.yaml", APP.format(version="1.0", marks=os.devnull))
    write(root / "nebula.yaml", "")
    for name, text in files.items():
        write(root / name, text)
    return root


NOTES = "package: notes\nvalues: {TITLE: x}\n"
KV_FILE = "package: kv\nversion: '{version}'\nvalues: {{KV_TOKEN: '${{secret:t}}'}}\n"


def test_an_unmet_requirement_is_an_error_at_the_dependant(tmp_path: Path) -> None:
    root = repo_with(tmp_path, {"packages/notes.yaml": NOTES})
    [issue] = validate(root)
    assert issue.startswith("packages/notes.yaml:1:1: package: notes 1.0 requires kv >=1,<3:")
    assert "no installation provides it (add packages/kv.yaml, or run `nebula install kv`)" in issue


def test_a_provider_at_a_version_outside_the_constraint_is_a_conflict(tmp_path: Path) -> None:
    write(tmp_path / "repo" / "catalog" / "kv" / "3.yaml", KV.format(version="3"))
    root = repo_with(
        tmp_path, {"packages/notes.yaml": NOTES, "packages/kv.yaml": KV_FILE.format(version=3)}
    )
    [issue] = validate(root)
    assert "requires kv >=1,<3: installation 'kv' has kv 3" in issue


def test_two_candidate_providers_must_be_chosen_between(tmp_path: Path) -> None:
    files = {
        "packages/notes.yaml": NOTES,
        "packages/kv.yaml": KV_FILE.format(version=1),
        "packages/kv-b.yaml": KV_FILE.format(version=2),
    }
    root = repo_with(tmp_path, files)
    [issue] = validate(root)
    assert (
        "several installations could (kv, kv-b): choose one under `dependencies: {kv: NAME}`"
        in issue
    )
    write(root / "packages" / "notes.yaml", NOTES + "dependencies: {kv: kv-b}\n")
    assert validate(root) == []


def test_a_dependency_cycle_is_reported(tmp_path: Path) -> None:
    root = repo_with(tmp_path, {})
    cyclic = KV.format(version="1") + "requires:\n  - package: notes\n"
    write(root / "catalog" / "kv" / "1.yaml", cyclic)
    write(
        root / "catalog" / "notes" / "1.0.yaml",
        APP.format(version="1.0", marks=os.devnull) + "provides: {service: notes}\n",
    )
    write(root / "packages" / "kv.yaml", KV_FILE.format(version=1))
    write(root / "packages" / "notes.yaml", NOTES)
    issues = validate(root)
    assert any("dependency cycle: " in i and "kv" in i and "notes" in i for i in issues), issues


def test_install_refuses_when_no_catalog_version_meets_a_requirement(tmp_path: Path) -> None:
    from nebula.engine.catalog_edits import MarketplaceError, plan_install

    root = repo_with(tmp_path, {})
    write(
        root / "catalog" / "notes" / "1.0.yaml",
        APP.format(version="1.0", marks=os.devnull).replace(">=1,<3", ">=5"),
    )
    with pytest.raises(
        MarketplaceError, match=r"requires kv >=5: no catalog version meets it \(available: 1, 2\)"
    ):
        plan_install(load_repo(root), "notes")


# -- through a running nebulad -------------------------------------------------------------------


@pytest.fixture
def nebulad(homelab: Path, tmp_path: Path, docker_host: str) -> Iterator[tuple[Path, Path]]:
    """nebulad following a bare repo that `homelab` (now a clone of it) pushes to."""
    bare = tmp_path / "homelab.git"
    git(tmp_path, "clone", "-q", "--bare", str(homelab), str(bare))
    git(homelab, "remote", "add", "origin", str(bare))
    git(homelab, "fetch", "-q", "origin")
    git(homelab, "branch", "-q", "--set-upstream-to=origin/main")
    args = ("--source", str(bare), "--docker-host", docker_host, "--poll-interval", "3600s")
    with servers.nebulad(*args, data=tmp_path / "d") as socket_path:
        yield bare, socket_path


def test_install_through_nebulad_applies_the_pushed_commit(
    homelab: Path, nebulad: tuple[Path, Path], docker_host: str
) -> None:
    bare, socket_path = nebulad
    out = nebula(
        "install", "notes", "--repo", str(homelab), "--set", "TITLE=x", "--socket", str(socket_path)
    )
    assert "pushed to origin" in out
    assert "sync" in out and "succeeded" in out
    assert git(bare, "log", "-1", "--format=%s") == "Install notes (notes 1.1) with kv 2"
    assert set(running(docker_host)) == {"kv-kv", "notes-notes"}
    out = nebula("uninstall", "kv", "--repo", str(homelab), "--socket", str(socket_path), code=1)
    assert "cannot uninstall kv: notes depends on it" in out

    # the dashboard's way: the API commits as its caller, pushes, and the daemon syncs
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://nebulad", timeout=60) as client:
        found = client.get("/api/v1/marketplace/packages", params={"q": "notes"}).json()
        assert [p["name"] for p in found["packages"]] == ["notes"]
        refused = client.delete("/api/v1/marketplace/installations/kv")
        assert refused.status_code == 409, refused.text
        done = client.delete("/api/v1/marketplace/installations/notes")
        assert done.status_code == 202, done.text
        assert done.json()["files"] == ["packages/notes.yaml"]
        deadline = time.monotonic() + 60
        while "notes-notes" in running(docker_host):
            assert time.monotonic() < deadline, "the uninstall was not applied"
            time.sleep(0.2)
        installed = client.post(
            "/api/v1/marketplace/install", json={"package": "notes", "name": "todo", "values": {}}
        )
        assert installed.status_code == 400
        assert "values needed: todo: TITLE" in installed.json()["error"]
    assert git(bare, "log", "-1", "--format=%an %s").startswith("nebulad API (uid:")
    assert running(docker_host) == {"kv-kv": "nebula-test/kv:2"}
