"""Compose `secrets:` served from the vault as files: /run/secrets/NAME, 0400, kept in memory
and never on disk, recreated when the secret changes, gone with the container."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

import servers
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.providers.docker.secret_files import MEMORY_FILESYSTEMS, filesystem_type
from test_secret_refs import Cli, client, ids, write_repo

__all__ = ["client"]  # the fixture

PLAIN = "pg-password-5c2e"
NEW = "pg-password-rotated-91"

APP = """compose:
  services:
    db:
      image: {image}
      command: [sleep, "3600"]
      user: "1000:1001"
      secrets:
        - db_pass
        - {{source: api, target: api-key, uid: "0", mode: 0440}}
        - {{source: token, target: /etc/app/token}}
    side:
      image: {image}
      command: [sleep, "3600"]
  secrets:
    db_pass: {{external: true}}
    api: {{external: true, name: shared.api-key}}
    token: {{environment: TOKEN}}
variables:
  - {{name: TOKEN, secret: true, required: true}}
values: {{TOKEN: '${{secret:app.token}}'}}
"""


def test_secrets_are_files_in_memory_owned_as_asked_and_follow_the_vault(
    tmp_path: Path,
    client: docker.DockerClient,
    docker_host: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    repo = write_repo(tmp_path / "repo", {"app": APP.format(image=servers.TEST_IMAGE)})
    nebula = Cli(docker_host, database_url)
    nebula("secrets", "init")
    for name, value in (("db_pass", PLAIN), ("shared.api-key", "key-1"), ("app.token", "tok")):
        nebula("secrets", "set", name, stdin=value)
    nebula("apply", str(repo))
    db = client.containers.get("app-db")

    def run(*command: str) -> str:
        return db.exec_run(list(command)).output.decode()

    assert run("cat", "/run/secrets/db_pass") == PLAIN
    assert run("cat", "/run/secrets/api-key") == "key-1"  # a bare target goes to /run/secrets
    assert run("cat", "/etc/app/token") == "tok"
    # 0400 and owned by the service's user by default; the long syntax's uid and mode win
    assert run("stat", "-c", "%a %u %g", "/run/secrets/db_pass").split() == ["400", "1000", "1001"]
    assert run("stat", "-c", "%a %u %g", "/run/secrets/api-key").split() == ["440", "0", "1001"]
    assert "Read-only file system" in run("sh", "-c", "echo x > /run/secrets/db_pass 2>&1")

    # the host side is a memory file system, and the value is nowhere else
    sources = [m["Source"] for m in db.attrs["Mounts"] if m["Destination"].startswith("/run")]
    assert sources and all(filesystem_type(Path(s)) in MEMORY_FILESYSTEMS for s in sources)
    attrs = json.dumps(db.attrs, ensure_ascii=False)
    assert PLAIN not in attrs and "••••" in attrs  # the label shows only the stand-in
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert PLAIN.encode() not in on_disk

    before = ids(client)
    assert "No changes." in nebula("plan", str(repo))
    nebula("secrets", "set", "db_pass", stdin=NEW)
    plan = json.loads(nebula("plan", str(repo), "--output", "json"))
    pending = [(c["action"], c["name"]) for c in plan["changes"] if c["action"] != "noop"]
    assert pending == [("update", "app-db")]
    nebula("apply", str(repo))
    after = ids(client)
    assert after["app-side"] == before["app-side"] and after["app-db"] != before["app-db"]
    db = client.containers.get("app-db")
    assert db.exec_run(["cat", "/run/secrets/db_pass"]).output.decode() == NEW
    folders = {Path(m["Source"]).parent for m in db.attrs["Mounts"] if "secrets" in m["Source"]}

    (repo / "packages" / "app.yaml").unlink()
    nebula("apply", str(repo), "--yes")
    assert "app-db" not in ids(client)
    assert folders and not any(folder.exists() for folder in folders)


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def test_secrets_that_cannot_be_served_are_refused_at_their_line(tmp_path: Path) -> None:
    write_repo(
        tmp_path / "resolved",
        {
            "app": """compose:
  services:
    web:
      image: nginx:1.27
      user: app
      secrets: [db_pas, token, {source: db_pass, uid: nobody}]
  secrets:
    db_pass: {external: true}
    token: {environment: TOKNE}
variables: [{name: TOKEN, default: x}]
"""
        },
    )
    errors = errors_of(tmp_path / "resolved")
    assert any(
        "packages/app.yaml:6" in e
        and "secret 'db_pas' is not declared under compose.secrets; did you mean 'db_pass'?" in e
        for e in errors
    ), errors
    assert any(
        "packages/app.yaml:9" in e
        and "'TOKNE' is not a variable of the installation; did you mean 'TOKEN'?" in e
        for e in errors
    ), errors
    assert any("'nobody' is not a numeric id" in e for e in errors), errors

    write_repo(
        tmp_path / "checked",
        {
            "filed": """compose:
  services: {web: {image: nginx:1.27, secrets: [a, b]}}
  secrets:
    a: {file: ./a.txt}
    b: {name: other}
""",
        },
    )
    errors = errors_of(tmp_path / "checked")
    assert any(
        "packages/filed.yaml:4" in e
        and "plain text in git" in e
        and "nebula secrets set NAME < FILE" in e
        for e in errors
    ), errors
    assert any("packages/filed.yaml:5" in e and "give `external: true`" in e for e in errors), (
        errors
    )
