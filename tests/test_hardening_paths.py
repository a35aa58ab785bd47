"""Names and paths: one name grammar everywhere a name comes in, nothing written or read
outside the config repo and the catalog, and no host file leaking through a repo file.

The daemon tests drive a real nebulad (watch mode, real Docker Engine) over its unix socket.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import servers
from nebula import paths
from nebula.cli.app import app
from nebula.engine.catalog_edits import RepoEdit, plan_install
from nebula.errors import ConfigError
from nebula.identity import accounts
from nebula.paths import MAX_FILE_BYTES, UnsafePathError, within
from nebula.secrets import VaultError
from nebula.secrets.vault import check_name as check_secret
from nebula.spec.installation import Installation
from nebula.spec.names import InvalidNameError, check_name, check_secret_name
from nebula.spec.repo import load_repo
from nebula.store.identity import IdentityError

# What a host file's lines look like: they must appear in no error, API answer or record.
SECRET = "root:$y$j9T$SECRETHASH0123456789:19000:0:99999:7:::"
KV = """\
name: kv
version: "1"
compose:
  services:
    kv:
      image: nebula-test/kv:1
      healthcheck: {test: [CMD, "true"]}
"""
# A YAML file outside the catalog whose keys must never be echoed.
OUTSIDE_PACKAGE = "LEAKEDKEY_4711: 1\nname: evil\nversion: '1'\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def repo(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    """A config repo with its own catalog (kv 1), and a host file with `SECRET` beside it."""
    root = tmp_path / "lab" / "repo"
    write(root / "nebula.yaml", "")
    write(root / "catalog" / "kv" / "1.yaml", KV)
    (root / "packages").mkdir()
    for name, text in (files or {}).items():
        write(root / name, text)
    write(tmp_path / "host" / "shadow", SECRET + "\n")
    write(tmp_path / "outside" / "evil" / "1.yaml", OUTSIDE_PACKAGE)
    return root


def problems(root: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_repo(root)
    return str(caught.value)


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# -- the name grammar ------------------------------------------------------------------------

VALID = ["a", "blog", "nextcloud-2", "db.primary", "my_app", "0day", "x" * 63]
INVALID = [
    "",
    "..",
    ".hidden",
    "../../evil",
    "a/b",
    "/etc/passwd",
    "Blog",
    "my app",
    "-dash",
    "_under",
    "x" * 64,
    "🌌app",
    "a\nb",
    "a\x00b",
]


@pytest.mark.parametrize("name", VALID)
def test_the_grammar_accepts_names(name: str) -> None:
    assert check_name(name) == name
    assert Installation(name=name, package=name).name == name


@pytest.mark.parametrize("name", INVALID)
def test_the_grammar_refuses_names_saying_what_is_valid(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"is not valid: use 1 to 63 of a-z, 0-9"):
        check_name(name, "installation name")
    for field in ("name", "package", "node"):
        with pytest.raises(ValidationError, match="is not valid: use 1 to 63"):
            Installation.model_validate({"package": "kv", field: name})
    with pytest.raises(IdentityError, match="is not valid: use 1 to 63"):
        accounts.check_name(name)


def test_secret_names_keep_upper_case_and_refuse_paths() -> None:
    for good in ("PDNS_API_KEY", "blog.db_password", "_x", "a" * 128):
        assert check_secret_name(good) == good
    for bad in ("", "../x", "a/b", "a b", "-x", "a" * 129, "${x}"):
        with pytest.raises(VaultError, match=r"secret name .* is not valid: use 1 to 128"):
            check_secret(bad)


def test_a_long_bad_name_is_quoted_short() -> None:
    with pytest.raises(InvalidNameError) as caught:
        check_name(SECRET * 10)
    assert "name 'root:$y$j9T$'… (510 chars) is not valid" in str(caught.value)
    assert "SECRETHASH" not in str(caught.value)


# -- paths under a root ----------------------------------------------------------------------


def test_within_refuses_what_resolves_outside_the_root(tmp_path: Path) -> None:
    root = repo(tmp_path)
    assert within(root, "packages/new.yaml") == root / "packages" / "new.yaml"
    (root / "packages" / "inside.yaml").symlink_to(root / "nebula.yaml")
    assert within(root, "packages/inside.yaml") == root / "nebula.yaml"
    (root / "packages" / "out").symlink_to(tmp_path / "host")
    for bad in ("../x.yaml", "packages/../../x.yaml", "/etc/passwd", "packages/out/shadow"):
        with pytest.raises(UnsafePathError, match="resolves outside"):
            within(root, bad)


def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check and the open are two steps: a parent folder replaced by a symlink out of the
    repo between them must not lead the open outside."""
    root = repo(tmp_path, {"packages/sub/x.yaml": "package: kv\n"})
    write(tmp_path / "host" / "x.yaml", SECRET + "\n")
    checked = paths._check_kind

    def check_then_swap(info: os.stat_result, name: str, limit: int) -> None:
        checked(info, name, limit)
        if not (root / "packages" / "old").exists():  # once: the check of the open file holds
            (root / "packages" / "sub").rename(root / "packages" / "old")
            (root / "packages" / "sub").symlink_to(tmp_path / "host")

    monkeypatch.setattr(paths, "_check_kind", check_then_swap)
    with pytest.raises(UnsafePathError, match="resolves outside"):
        paths.read_file(root / "packages" / "sub" / "x.yaml", root)


def test_a_repo_edit_outside_the_repo_writes_nothing(tmp_path: Path) -> None:
    root = repo(tmp_path)
    before = files_under(tmp_path)
    edit = RepoEdit({"packages/ok.yaml": "x", "packages/../../../host/shadow": "pwned"})
    with pytest.raises(UnsafePathError, match="resolves outside"):
        edit.apply_to(root)
    assert files_under(tmp_path) == before


# -- install names, from the CLI and the engine ----------------------------------------------


def test_cli_install_refuses_a_traversal_name_and_writes_nothing(tmp_path: Path) -> None:
    root = repo(tmp_path)
    before = files_under(tmp_path)
    for args, what in (
        (["kv", "--name", "../../evil"], "installation name '../../evil' is not valid"),
        (["../../outside/evil"], "package name '../../outside/evil' is not valid"),
        (["kv", "--node", "../n"], "node name '../n' is not valid"),
    ):
        result = CliRunner().invoke(
            app, ["install", *args, "--repo", str(root), "--dry-run"], env={"COLUMNS": "200"}
        )
        output = result.stdout + result.stderr
        assert result.exit_code == 1, output
        assert what in output and "use 1 to 63 of a-z" in output
        assert "Traceback" not in output
    assert files_under(tmp_path) == before


def test_the_catalog_is_never_asked_for_a_path(tmp_path: Path) -> None:
    root = repo(tmp_path)
    with pytest.raises(InvalidNameError, match="package name"):
        plan_install(load_repo(root), "../../outside/evil")
    from nebula.engine.load import catalog_for

    catalog = catalog_for(load_repo(root))
    assert catalog.versions("../../outside/evil") == []
    assert catalog.get("../../outside/evil") is None


def test_a_catalog_folder_or_file_leading_out_of_the_catalog_is_refused_unread(
    tmp_path: Path,
) -> None:
    from nebula.engine.load import catalog_for

    root = repo(tmp_path, {"packages/kv.yaml": "package: kv\nversion: '2'\n"})
    (root / "catalog" / "evil").symlink_to(tmp_path / "outside" / "evil")
    (root / "catalog" / "kv" / "2.yaml").symlink_to(root / "packages" / "kv.yaml")
    catalog = catalog_for(load_repo(root))
    for ask in (lambda: catalog.versions("evil"), lambda: catalog.get("evil", "1")):
        with pytest.raises(ConfigError, match=f"catalog/evil:1:1: resolves outside {root}/catalog"):
            ask()
    with pytest.raises(ConfigError) as caught:
        catalog.get("kv", "2")  # a repo file, but not one of the catalog
    assert str(caught.value) == f"catalog/kv/2.yaml:1:1: resolves outside {root}/catalog; refused"
    result = CliRunner().invoke(app, ["catalog", "validate", str(root / "catalog")])
    assert f"catalog/evil:1:1: resolves outside {root}/catalog; refused" in result.output
    assert "LEAKEDKEY" not in result.output and "Traceback" not in result.output


# -- repo files that must not be read --------------------------------------------------------


def test_a_package_path_in_the_repo_is_refused_without_reading_it(tmp_path: Path) -> None:
    root = repo(tmp_path, {"packages/evil.yaml": "package: ../../../outside/evil\n"})
    found = problems(root)
    assert "packages/evil.yaml:1:1: package: name '../../../outside/evil' is not valid" in found
    assert "LEAKEDKEY" not in found


def test_a_symlink_to_a_host_file_is_refused_unread(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "packages" / "leak.yaml").symlink_to(tmp_path / "host" / "shadow")
    (root / "domains").mkdir()
    (root / "domains" / "leak.yaml").symlink_to(tmp_path / "host" / "shadow")
    found = problems(root)
    assert f"packages/leak.yaml:1:1: resolves outside {root}; refused" in found
    assert f"domains/leak.yaml:1:1: resolves outside {root}; refused" in found
    assert "SECRETHASH" not in found and "root:" not in found


def test_a_file_that_is_not_a_package_is_quoted_masked(tmp_path: Path) -> None:
    """A host file copied (not linked) into the repo reads as YAML keys: the errors name each
    line's place, never more of its content than an excerpt (up to 32 characters, else 12)."""
    lines = f"{SECRET}\ndaemon:*:19000:0:99999:7:::\n"
    root = repo(tmp_path, {"packages/copied.yaml": lines})
    found = problems(root)
    assert "packages/copied.yaml:1:1: 'root:$y$j9T$'… (50 chars): unknown field" in found
    assert "packages/copied.yaml:2:1: 'daemon:*:19000:0:99999:7::': unknown field" in found
    assert "SECRETHASH" not in found


def test_a_symlink_inside_the_repo_is_read(tmp_path: Path) -> None:
    root = repo(tmp_path, {"apps/kv.yaml": "package: kv\n"})
    (root / "packages" / "kv.yaml").symlink_to(root / "apps" / "kv.yaml")
    assert [s.name for s in load_repo(root).installations] == ["kv"]


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root = repo(tmp_path)
    os.mkfifo(root / "packages" / "fifo.yaml")
    assert "packages/fifo.yaml:1:1: not a regular file (a FIFO); refused" in problems(root)


@pytest.mark.timeout(10)
def test_dev_zero_and_a_huge_file_are_refused_unread(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "packages" / "zero.yaml").symlink_to("/dev/zero")
    (root / "huge.yaml").write_bytes(b"a: b\n" * (MAX_FILE_BYTES // 5 + 1))
    (root / "packages" / "huge.yaml").symlink_to(root / "huge.yaml")
    found = problems(root)
    assert f"packages/zero.yaml:1:1: resolves outside {root}; refused" in found
    assert "packages/huge.yaml:1:1: larger than 1,048,576 bytes" in found


@pytest.mark.timeout(10)
def test_a_packages_folder_loop_or_escape_is_an_error_not_an_empty_folder(
    tmp_path: Path,
) -> None:
    root = repo(tmp_path)
    (root / "packages").rmdir()
    (root / "packages").symlink_to("packages")
    assert "packages:1:1: a symlink loop" in problems(root)
    (root / "packages").unlink()
    (root / "packages").symlink_to(tmp_path / "host")
    assert f"packages:1:1: resolves outside {root}; refused" in problems(root)
    (root / "packages").unlink()
    (root / "catalog").rename(root / "catalog-old")
    (root / "catalog").symlink_to(tmp_path / "outside")
    assert f"catalog:1:1: resolves outside {root}; refused" in problems(root)


@pytest.mark.timeout(20)
def test_secrets_list_reads_no_fifo_device_or_file_outside_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which installations use a secret is read from the repo's files as validation reads
    them: a FIFO would block `nebula secrets list` and `rm`, /dev/zero would fill memory."""
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "master.key"))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    root = repo(tmp_path, {"packages/app.yaml": "package: kv\nvalues: {A: '${secret:app.pw}'}\n"})
    write(tmp_path / "host" / "refs.yaml", "x: ${secret:host.only}\n")
    os.mkfifo(root / "packages" / "fifo.yaml")
    (root / "packages" / "zero.yaml").symlink_to("/dev/zero")
    (root / "packages" / "host.yaml").symlink_to(tmp_path / "host" / "refs.yaml")
    db = ["--database-url", f"sqlite:///{tmp_path}/nebula.db"]
    assert CliRunner().invoke(app, ["secrets", "init", *db]).exit_code == 0
    listed = CliRunner().invoke(app, ["secrets", "list", "--repo", str(root), *db, "-o", "json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["missing"] == [{"name": "app.pw", "used_by": ["app"]}]
    removed = CliRunner().invoke(app, ["secrets", "rm", "host.only", "--repo", str(root), *db])
    assert "no secret 'host.only' in the vault" in removed.output  # not "used by host"


# -- through nebulad's API -------------------------------------------------------------------


@pytest.fixture
def nebulad(tmp_path: Path, docker_host: str) -> Iterator[tuple[Path, httpx.Client]]:
    """nebulad following the repo folder (watch mode); a client on its unix socket."""
    root = repo(tmp_path)
    args = ("--source", str(root), "--watch", "--docker-host", docker_host, "--poll-interval", "1h")
    with servers.nebulad(*args, data=tmp_path / "d") as socket_path:
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://nebulad", timeout=60) as client:
            yield root, client


def test_api_install_with_a_traversal_name_answers_400_and_writes_nothing(
    nebulad: tuple[Path, httpx.Client], tmp_path: Path
) -> None:
    root, client = nebulad
    target = tmp_path / "host" / "shadow"  # `.yaml` is added: aim at a new file beside it
    existing = tmp_path / "host" / "existing.yaml"
    existing.write_text("keep: me\n")
    before = files_under(tmp_path / "host")
    up = "../" * 40
    for body, what in (
        ({"package": "kv", "name": up + str(existing.with_suffix(""))}, "installation name"),
        ({"package": "kv", "name": up + str(target)}, "installation name"),
        ({"package": up + str(tmp_path / "outside" / "evil")}, "package name"),
        ({"package": "kv", "node": "../n"}, "node name"),
    ):
        answer = client.post("/api/v1/marketplace/install", json=body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert what in error and "is not valid: use 1 to 63 of a-z" in error
        assert "LEAKEDKEY" not in answer.text
    assert files_under(tmp_path / "host") == before
    assert sorted(os.listdir(root / "packages")) == []


def test_a_symlinked_host_file_leaks_into_no_api_answer_or_record(
    nebulad: tuple[Path, httpx.Client], tmp_path: Path
) -> None:
    root, client = nebulad
    (root / "packages" / "leak.yaml").symlink_to(tmp_path / "host" / "shadow")
    assert client.post("/api/v1/sync").status_code == 202
    deadline = time.monotonic() + 60
    while True:
        syncs = client.get("/api/v1/syncs").json()["syncs"]
        errors = [e for s in syncs for e in s["errors"]]
        if any("packages/leak.yaml" in e for e in errors):
            break
        assert time.monotonic() < deadline, syncs
        time.sleep(0.2)
    assert any(f"packages/leak.yaml:1:1: resolves outside {root}; refused" in e for e in errors)
    answers = [
        client.get(path).text
        for path in ("/api/v1/syncs", "/api/v1/status", "/api/v1/installations")
    ]
    assert not [a for a in answers if "SECRETHASH" in a]
    stored = [path for path, data in files_under(tmp_path / "d").items() if b"SECRETHASH" in data]
    assert stored == []  # nor in the database (syncs, audit log) or anything else it keeps
