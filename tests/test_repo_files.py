"""Files an installation takes from its folder of the config repo (`packages/NAME/`):
`env_file:` read as compose reads it, and paths leaving the folder refused at their line."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.engine.memo import input_key
from nebula.errors import ConfigError
from nebula.kinds.packages.repo_files import MAX_TREE_BYTES, MAX_TREE_ENTRIES
from nebula.kinds.packages.types import ContainerSpec, RepoFolder
from nebula.paths import repo_files_dir


def write_app(root: Path, compose: str, files: dict[str, str] | None = None) -> Path:
    """The repo at `root` with `packages/app.yaml` and the files of `packages/app/`."""
    (root / "packages" / "app").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text("")
    (root / "packages" / "app.yaml").write_text(compose)
    for name, text in (files or {}).items():
        (root / "packages" / "app" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "packages" / "app" / name).write_text(text)
    return root


def containers_of(root: Path) -> dict[str, ContainerSpec]:
    (installation,) = load_desired(root).installations
    return {c.service: c for c in installation.containers}


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


ENV_APP = """compose:
  services:
    web:
      image: nginx:1.27
      env_file: [common.env, {path: web.env, required: true}, {path: local.env, required: false}]
      environment: {MODE: from-environment}
    worker:
      image: busybox:1.36
      env_file: common.env
variables:
  - {name: PORT, default: "8080"}
"""

COMMON_ENV = """# shared by both services
export LOG_LEVEL=info   # an inline comment
URL=http://web:${PORT}/
LITERAL='${PORT} stays as written'
QUOTED="two\\nlines # not a comment"
MULTI="first
second"
MODE=from-file
EMPTY=
"""


def test_env_files_are_read_as_compose_reads_them_and_environment_wins(tmp_path: Path) -> None:
    write_app(tmp_path, ENV_APP, {"common.env": COMMON_ENV, "web.env": "LOG_LEVEL=debug\n"})
    containers = containers_of(tmp_path)
    assert dict(containers["web"].environment) == {
        "LOG_LEVEL": "debug",  # the later file wins
        "URL": "http://web:8080/",
        "LITERAL": "${PORT} stays as written",
        "QUOTED": "two\nlines # not a comment",
        "MULTI": "first\nsecond",
        "MODE": "from-environment",  # environment: wins over every file
        "EMPTY": "",
    }
    assert dict(containers["worker"].environment)["LOG_LEVEL"] == "info"


def test_editing_an_env_file_changes_only_the_services_using_it(tmp_path: Path) -> None:
    write_app(tmp_path, ENV_APP, {"common.env": COMMON_ENV, "web.env": "LOG_LEVEL=debug\n"})
    before = {name: c.spec_hash for name, c in containers_of(tmp_path).items()}
    (tmp_path / "packages" / "app" / "web.env").write_text("LOG_LEVEL=warning\n")
    after = {name: c.spec_hash for name, c in containers_of(tmp_path).items()}
    assert after["web"] != before["web"]
    assert after["worker"] == before["worker"]


def test_an_optional_env_file_added_later_is_read_on_the_next_load(tmp_path: Path) -> None:
    """The files an installation read, and the ones it found missing, are looked at again on
    every load, though the installation's own file did not change."""
    write_app(tmp_path, ENV_APP, {"common.env": COMMON_ENV, "web.env": "LOG_LEVEL=debug\n"})
    assert dict(containers_of(tmp_path)["web"].environment)["LOG_LEVEL"] == "debug"
    (tmp_path / "packages" / "app" / "local.env").write_text("LOG_LEVEL=trace\n")
    assert dict(containers_of(tmp_path)["web"].environment)["LOG_LEVEL"] == "trace"


def test_a_remembered_plan_is_not_replayed_once_a_file_of_the_folder_changed(
    tmp_path: Path,
) -> None:
    write_app(tmp_path, ENV_APP, {"common.env": COMMON_ENV, "conf/web.env": "A=1\n"})
    key = input_key(tmp_path, [])
    (tmp_path / "packages" / "app" / "conf" / "web.env").write_text("A=2\n")
    assert input_key(tmp_path, []) != key


def test_env_files_that_cannot_be_read_are_refused_at_their_line(tmp_path: Path) -> None:
    outside = tmp_path / "outside.env"
    outside.write_text("STOLEN=yes\n")
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      env_file:
        - missing.env
        - ../other.yaml
        - /etc/passwd
        - link.env
        - bad.env
        - bare.env
""",
        {"bad.env": "OK=1\nnot an assignment\n", "bare.env": "HOME\n"},
    )
    os.symlink(outside, tmp_path / "packages" / "app" / "link.env")
    at = "packages/app.yaml:{}:11: compose.services.web.env_file[{}]: "
    assert errors_of(tmp_path) == [
        at.format(6, 0) + "'missing.env': no such file in packages/app/",
        at.format(7, 1) + "'../other.yaml': resolves outside "
        f"{(tmp_path / 'packages' / 'app').resolve()}; refused",
        at.format(8, 2) + "'/etc/passwd' is absolute: name a file inside packages/app/",
        at.format(9, 3) + "'link.env': resolves outside "
        f"{(tmp_path / 'packages' / 'app').resolve()}; refused",
        at.format(10, 4) + "'bad.env': line 2: expected NAME=VALUE",
        at.format(11, 5) + "'bare.env' line 1: HOME has no value; write HOME=VALUE",
    ]


def test_an_installation_without_a_folder_is_told_where_its_files_go(tmp_path: Path) -> None:
    write_app(tmp_path, "compose:\n  services:\n    web: {image: 'nginx:1.27', env_file: .env}\n")
    (tmp_path / "packages" / "app").rmdir()
    assert errors_of(tmp_path) == [
        "packages/app.yaml:3:32: compose.services.web.env_file: '.env': there is no folder "
        "packages/app/",
    ]


FILES_APP = """compose:
  services:
    web:
      image: {image}
      command: [sleep, "3600"]
      init: true
      configs: [app_config, {{source: secret_ish, target: /etc/app/limited.conf, mode: 0440}}]
      volumes: ["./conf/app.ini:/etc/app.ini"]
    other:
      image: {image}
      command: [sleep, "3600"]
      init: true
  configs:
    app_config: {{file: ./app.conf}}
    secret_ish: {{file: limited.conf}}
"""


def test_configs_and_relative_binds_are_mounted_and_an_edit_recreates_only_their_service(
    tmp_path: Path, docker_host: str, test_image: str
) -> None:
    files = {"app.conf": "greeting = hello\n", "limited.conf": "x\n", "conf/app.ini": "[a]\n"}
    write_app(tmp_path, FILES_APP.format(image=test_image), files)
    cli = CliRunner()
    database = ["--docker-host", docker_host, "--database-url", f"sqlite:///{tmp_path}/n.db"]
    result = cli.invoke(app, ["apply", str(tmp_path), *database])
    assert result.exit_code == 0, result.output
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)

    def run(*command: str) -> str:
        exec_id = engine.exec_create("app-web", list(command))
        return engine.exec_start(exec_id).decode()

    assert run("cat", "/app_config") == "greeting = hello\n"  # compose's default target
    assert run("cat", "/etc/app.ini") == "[a]\n"
    assert run("stat", "-c", "%a", "/etc/app/limited.conf").strip() == "440"
    assert "Read-only file system" in run("sh", "-c", "echo changed > /etc/app.ini 2>&1")
    ids = {name: engine.inspect_container(name)["Id"] for name in ("app-web", "app-other")}

    (tmp_path / "packages" / "app" / "app.conf").write_text("greeting = hi\n")
    result = cli.invoke(app, ["apply", str(tmp_path), *database])
    assert result.exit_code == 0, result.output
    assert engine.inspect_container("app-other")["Id"] == ids["app-other"]
    assert engine.inspect_container("app-web")["Id"] != ids["app-web"]
    assert run("cat", "/app_config") == "greeting = hi\n"


def test_configs_and_binds_leaving_the_folder_are_refused_at_their_line(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      configs: [app_config, missing, {source: app_config, target: relative/path}]
      volumes: ["../app.yaml:/etc/x", "./data:/data", "~/x:/etc/y", "./app.ini:/etc/app.ini"]
  configs:
    app_config: {file: /etc/hostname}
""",
        {"conf/a.ini": ""},
    )
    at = "packages/app.yaml:{}:{}: compose.services.web.{}: "
    folder = (tmp_path / "packages" / "app").resolve()
    assert errors_of(tmp_path) == [
        at.format(5, 17, "configs[0]")
        + "'/etc/hostname' is absolute: name a file inside packages/app/",
        at.format(5, 29, "configs[1]") + "config 'missing' is not declared under compose.configs",
        at.format(5, 38, "configs[2]") + "target 'relative/path' must be an absolute path",
        at.format(6, 17, "volumes[0]") + f"'../app.yaml': resolves outside {folder}; refused",
        at.format(6, 39, "volumes[1]") + "'./data': no such file or folder in packages/app/; "
        "keep data the app writes in a named volume (`data:/data`)",
        at.format(6, 55, "volumes[2]") + "bind mount '~/x': use an absolute host path, a file "
        "of the installation's folder (./NAME) or a named volume",
        at.format(6, 69, "volumes[3]") + "'./app.ini': no such file or folder in packages/app/",
    ]


def test_a_file_of_the_folder_asked_for_writable_is_refused_not_silently_read_only(
    tmp_path: Path,
) -> None:
    for written in ('"./app.conf:/etc/app.conf:rw"',
                    "{type: bind, source: ./app.conf, target: /etc/app.conf, read_only: false}"):  # fmt: skip
        root = tmp_path / str(len(written))
        (root / "packages" / "app").mkdir(parents=True)
        (root / "nebula.yaml").write_text("{}\n")
        (root / "packages" / "app" / "app.conf").write_text("x=1\n")
        (root / "packages" / "app.yaml").write_text(
            "compose:\n  services:\n    web:\n      image: busybox\n"
            f"      volumes:\n        - {written}\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_desired(root)
        [issue] = caught.value.issues
        assert "always mounted read-only; leave out `rw`" in str(issue), issue
        assert issue.file == "packages/app.yaml" and issue.line == 6


def test_an_env_file_line_may_use_the_lines_before_it(tmp_path: Path) -> None:
    """As compose reads it: an earlier line of the file is found before the app's variables."""
    app = ENV_APP.replace('default: "8080"', 'default: "8080"}\n  - {name: A, default: "app"')
    write_app(tmp_path, app, {"common.env": "A=1\nD=$A\nE=${A}x\nF=${PORT}\n", "web.env": ""})
    env = dict(containers_of(tmp_path)["worker"].environment)
    assert (env["D"], env["E"], env["F"]) == ("1", "1x", "8080")


FOLDER_APP = """compose:
  services:
    web:
      image: {image}
      command: [sleep, "3600"]
      init: true
      volumes: ["./site:/srv/site:ro"]
    other:
      image: {image}
      command: [sleep, "3600"]
      init: true
      volumes: ["./other.conf:/etc/other.conf"]
"""
SITE = {
    "site/index.html": "<h1>home</h1>\n",
    "site/sub/page.txt": "first\n",
    "site/run.sh": "#!/bin/sh\necho ran\n",
    "other.conf": "x\n",
}


def test_a_folder_bound_from_the_repo_is_mounted_whole_and_its_old_copies_are_deleted(
    tmp_path: Path, docker_host: str, test_image: str
) -> None:
    write_app(tmp_path, FOLDER_APP.format(image=test_image), SITE)
    (tmp_path / "packages" / "app" / "site" / "run.sh").chmod(0o755)
    (tmp_path / "packages" / "app" / "site" / "empty").mkdir()
    cli = CliRunner()
    database = ["--docker-host", docker_host, "--database-url", f"sqlite:///{tmp_path}/n.db"]

    def apply(*extra: str) -> None:
        result = cli.invoke(app, ["apply", str(tmp_path), *database, *extra])
        assert result.exit_code == 0, result.output

    def materialised() -> set[str]:
        return {entry.name for entry in repo_files_dir().iterdir()}

    def folder_digest() -> str:
        (folder,) = containers_of(tmp_path)["web"].files
        assert isinstance(folder, RepoFolder)
        return folder.digest

    apply()
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)

    def run(*command: str) -> str:
        exec_id = engine.exec_create("app-web", list(command))
        return engine.exec_start(exec_id).decode()

    assert run("cat", "/srv/site/index.html", "/srv/site/sub/page.txt") == "<h1>home</h1>\nfirst\n"
    assert run("/srv/site/run.sh") == "ran\n"  # the executable bit is kept
    assert run("stat", "-c", "%a", "/srv/site/index.html", "/srv/site/empty").split() == [
        "444",
        "555",
    ]
    assert "Read-only file system" in run("sh", "-c", "touch /srv/site/new 2>&1")
    first = folder_digest()
    assert first in materialised()
    ids = {name: engine.inspect_container(name)["Id"] for name in ("app-web", "app-other")}

    (tmp_path / "packages" / "app" / "site" / "sub" / "page.txt").write_text("second\n")
    apply()
    assert engine.inspect_container("app-other")["Id"] == ids["app-other"]
    assert engine.inspect_container("app-web")["Id"] != ids["app-web"]
    assert run("cat", "/srv/site/sub/page.txt") == "second\n"
    assert folder_digest() != first
    assert folder_digest() in materialised()
    assert first not in materialised()  # no container binds the old copy any more

    (tmp_path / "packages" / "app.yaml").unlink()
    apply("--yes")
    assert materialised() == set()


def test_a_bound_folder_holding_a_symlink_or_too_much_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      volumes: [./linked:/a, ./many:/b, ./large:/c, "./fifo:/d"]
""",
        {"linked/sub/app.conf": "x\n", "large/a.bin": "", "fifo/ok.txt": ""},
    )
    folder = tmp_path / "packages" / "app"
    (folder / "linked" / "sub" / "to-conf").symlink_to("app.conf")
    (folder / "many").mkdir()
    for i in range(MAX_TREE_ENTRIES + 1):
        (folder / "many" / f"{i}.txt").touch()
    os.truncate(folder / "large" / "a.bin", MAX_TREE_BYTES + 1)  # sparse: no disk used
    os.mkfifo(folder / "fifo" / "pipe")
    at = "packages/app.yaml:5:{}: compose.services.web.volumes[{}]: "
    assert errors_of(tmp_path) == [
        at.format(17, 0) + "'./linked': sub/to-conf: a symlink; a bound folder holds only "
        "files and folders: copy the file in, or bind it on its own; refused",
        at.format(30, 1) + "'./many': holds more than 1,000 files and folders, the most a "
        "bound folder may; refused",
        at.format(41, 2) + "'./large': its files hold more than 16,777,216 bytes, the most a "
        "bound folder may; refused",
        at.format(53, 3) + "'./fifo': pipe: not a regular file (a FIFO); refused",
    ]
