"""Files an installation takes from its folder of the config repo (`packages/NAME/`):
`env_file:` read as compose reads it, and paths leaving the folder refused at their line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nebula.engine.load import load_desired
from nebula.engine.memo import input_key
from nebula.errors import ConfigError
from nebula.kinds.packages.types import ContainerSpec


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
