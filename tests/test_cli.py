"""The CLI as a person meets it: messages, exit codes, JSON output. No Docker needed here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nebula.cli.app import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "homelab"


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def test_help_lists_the_commands_and_exit_codes() -> None:
    out = run("--help")
    for command in ("init", "validate", "plan", "apply", "status", "catalog"):
        assert command in out
    assert "Exit codes: 0 ok, 1 a change failed, 2 invalid config" in out
    assert run("--version").startswith("nebula ")


def test_init_scaffolds_a_git_repo_that_validates(tmp_path: Path) -> None:
    repo = tmp_path / "lab"
    assert "config repo created" in run("init", str(repo))
    assert (repo / ".git").is_dir()
    assert (repo / "packages").is_dir()
    assert "0 installations valid" in run("validate", str(repo))
    assert "already has a nebula.yaml" in run("init", str(repo), code=2)


def test_validate_the_example_homelab() -> None:
    assert "3 installations valid" in run("validate", str(EXAMPLE))
    data = json.loads(run("validate", str(EXAMPLE), "--output", "json"))
    assert data == {"ok": True, "installations": ["docs", "notes", "whoami"]}


def test_invalid_config_exits_2_with_file_line_and_json_errors(tmp_path: Path) -> None:
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "packages" / "web.yaml").write_text(
        "compose:\n  services:\n    web:\n      imagee: nginx\n"
    )
    out = run("validate", str(tmp_path), code=2)
    assert "invalid config (1 problem)" in out  # the suggestion alone, not "image missing" too
    assert (
        "packages/web.yaml:4:7: compose.services.web.imagee: unknown field; did you mean 'image'?"
        in out
    )
    data = json.loads(run("plan", str(tmp_path), "--output", "json", code=2))
    assert data["ok"] is False
    assert {
        "file": "packages/web.yaml",
        "line": 4,
        "column": 7,
        "field": "compose.services.web.imagee",
        "message": "unknown field; did you mean 'image'?",
    } in data["errors"]


def test_unreachable_docker_is_a_clear_error_with_exit_1() -> None:
    out = run("plan", str(EXAMPLE), "--docker-host", "unix:///nonexistent/docker.sock", code=1)
    assert "Docker Engine at unix:///nonexistent/docker.sock: cannot connect (No such file" in out


def test_catalog_list_and_show() -> None:
    out = run("catalog", "list")
    assert "wordpress" in out and "vaultwarden" in out
    packages = json.loads(run("catalog", "list", "--output", "json"))
    assert {"name": "wordpress", "version": "6.4.2", "category": "web",
            "description": "Popular CMS for websites and blogs"} in packages  # fmt: skip
    shown = run("catalog", "show", "wordpress")
    assert "wordpress: wordpress:6.4-apache" in shown
    assert "DB_PASSWORD [required, secret]: MySQL root password" in shown
    assert "did you mean 'wordpress'?" in run("catalog", "show", "wordpres", code=2)


def test_nebulad_explains_what_it_needs() -> None:
    script = "from nebula.cli.app import nebulad_main; nebulad_main()"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": ""},
    )
    assert done.returncode == 2
    assert "invalid daemon settings: source: Field required" in done.stderr
    assert "--watch" in run("daemon", "run", "--help")


def test_the_example_daemon_environment_names_real_settings() -> None:
    from nebula.daemon.config import ENV_PREFIX, DaemonConfig

    env_file = Path(__file__).resolve().parents[1] / "nebulad" / "nebulad.env"
    names = {
        line.lstrip("#").split("=", 1)[0]
        for line in env_file.read_text().splitlines()
        if line.lstrip("#").startswith(ENV_PREFIX)
    }
    assert names
    assert {n.removeprefix(ENV_PREFIX).lower() for n in names} <= set(DaemonConfig.model_fields)


def test_daemon_settings_come_from_file_then_environment_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nebula.daemon.config import load_config

    file = tmp_path / "nebulad.yaml"
    file.write_text("source: /srv/homelab.git\nbranch: prod\npoll_interval: 5m\nprune_max: 2\n")
    monkeypatch.setenv("NEBULA_BRANCH", "staging")
    monkeypatch.setenv("NEBULA_DRIFT_INTERVAL", "10")
    settings = load_config(file, {"branch": None, "prune_max": 4})
    assert settings.source == "/srv/homelab.git"
    assert settings.branch == "staging"  # the environment beats the file
    assert settings.poll_interval == 300.0 and settings.drift_interval == 10.0
    assert settings.prune_max == 4  # a flag beats both
    file.write_text("source: /srv/x\ntcp_listen: 0.0.0.0:8765\n")
    # TCP without a static token: only logins, API keys and service tokens get in.
    assert load_config(file, {}).token is None
