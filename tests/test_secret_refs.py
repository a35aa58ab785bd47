"""`${secret:NAME}` in the config repo: stand-ins while planning, values only inside Docker.

The resolve tests are pure; the apply test runs the CLI against a real Docker Engine with the
SQLite and the PostgreSQL store, and then searches everything Nebula wrote for the plaintext.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.catalog import Catalog
from nebula.cli.app import app
from nebula.errors import ConfigError
from nebula.kinds.packages.resolve import resolve
from nebula.paths import builtin_catalog_dir
from nebula.spec.repo import load_repo
from nebula.store import Store

PLAIN = "correct-horse-battery-staple-4711"
NEW = "second-value-of-the-token-0815"


def write_repo(root: Path, packages: dict[str, str]) -> Path:
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(
        "defaults: {bind_address: 127.0.0.1, health_timeout: 30s, subnet_pool: null}\n"
    )
    for name, text in packages.items():
        (root / "packages" / f"{name}.yaml").write_text(text)
    return root


def resolved(root: Path, fingerprints: dict[str, str]) -> list[object]:
    repo = load_repo(root)
    return list(resolve(repo, Catalog([builtin_catalog_dir()]), fingerprints))


def issues(root: Path, fingerprints: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolved(root, fingerprints)
    return [str(issue) for issue in caught.value.issues]


APP = """\
compose:
  services:
    web:
      image: {image}
      init: true
      command: ["sh", "-c", "sleep 3600"]
      environment:
        TOKEN: ${{secret:app.token}}
        MODE: plain
    side:
      image: {image}
      init: true
      command: ["sh", "-c", "sleep 3600"]
      environment:
        MODE: plain
"""


def test_references_become_stand_ins_and_record_their_fingerprints(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "app": APP.format(image="busybox:1"),
            "pg": "package: postgres\nvalues: {POSTGRES_PASSWORD: '${secret:pg.password}'}\n",
        },
    )
    fps = {"app.token": "0123456789ab", "pg.password": "ba9876543210", "unused": "ffffffffffff"}
    app_desired, pg = resolved(root, fps)
    web, side = app_desired.containers  # type: ignore[attr-defined]
    assert dict(web.environment)["TOKEN"] == "••••0123456789ab"
    assert app_desired.secrets == (("app.token", "0123456789ab"),)  # type: ignore[attr-defined]
    assert (
        side.spec_hash
        == resolved(root, fps | {"app.token": "000000000000"})[0].containers[1].spec_hash
    )  # type: ignore[attr-defined]
    assert (
        web.spec_hash
        != resolved(root, fps | {"app.token": "000000000000"})[0].containers[0].spec_hash
    )  # type: ignore[attr-defined]
    db = pg.containers[0]  # type: ignore[attr-defined]
    assert dict(db.environment)["POSTGRES_PASSWORD"] == "••••ba9876543210"
    assert pg.config["POSTGRES_PASSWORD"] == "••••ba9876543210"  # type: ignore[attr-defined]


def test_an_unknown_secret_points_at_the_line_and_says_how_to_create_it(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "app": APP.format(image="busybox:1"),
            "pg": "package: postgres\nvalues:\n  POSTGRES_PASSWORD: '${secret:pg-pass}'\n",
        },
    )
    assert issues(root, {}) == [
        "packages/app.yaml:8:9: compose.services.web.environment.TOKEN: no secret 'app.token' "
        "in the vault; create it with `nebula secrets set app.token`",
        "packages/pg.yaml:3:3: values.POSTGRES_PASSWORD: no secret 'pg-pass' in the vault; "
        "create it with `nebula secrets set pg-pass`",
    ]


def test_a_secret_variable_given_in_plain_text_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    root = write_repo(
        tmp_path, {"pg": f"package: postgres\nvalues:\n  POSTGRES_PASSWORD: {PLAIN}\n"}
    )
    (issue,) = issues(root, {})
    assert issue.startswith("packages/pg.yaml:3:3: values.POSTGRES_PASSWORD: ")
    assert "give it as ${secret:NAME}" in issue and "nebula secrets set NAME" in issue
    assert PLAIN not in issue


def test_secrets_stay_out_of_what_docker_shows(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "app": "compose:\n  services:\n    web:\n      image: busybox:1\n"
            "      labels: {auth: '${secret:t}'}\n      user: '${secret:t}'\n"
            "      environment: {LITERAL: '$${secret:t}'}\n"
        },
    )
    found = issues(root, {"t": "0123456789ab"})
    assert [i.split(": ")[1] for i in found] == [
        "compose.services.web.labels",
        "compose.services.web.user",
    ]
    assert all("pass it as environment" in i for i in found)
    (root / "packages" / "app.yaml").write_text(
        "compose:\n  services:\n    web:\n      image: busybox:1\n"
        "      environment: {LITERAL: '$${secret:t}', BAD: '${secret:not valid}'}\n"
    )
    (bad,) = issues(root, {"t": "0123456789ab"})
    assert "invalid secret reference" in bad and "environment.BAD" in bad


def test_validate_accepts_references_without_a_vault(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"app": APP.format(image="busybox:1")})
    result = CliRunner().invoke(app, ["validate", str(root)])
    assert result.exit_code == 0, result.stdout + result.stderr


# -- a real apply ----------------------------------------------------------------------------


@pytest.fixture
def client(docker_host: str, test_image: str) -> Iterator[docker.DockerClient]:
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    yield engine
    for container in engine.containers.list(all=True, filters={"label": "io.nebula.managed=true"}):
        container.remove(force=True)
    for network in engine.networks.list(filters={"label": "io.nebula.managed=true"}):
        network.remove()
    engine.close()


class Cli:
    def __init__(self, docker_host: str, database_url: str) -> None:
        self.docker_host, self.database_url = docker_host, database_url
        self.outputs: list[str] = []

    def __call__(self, *args: str, stdin: str | None = None, code: int = 0) -> str:
        options = ["--database-url", self.database_url]
        if args[0] in ("plan", "apply", "status"):
            options += ["--docker-host", self.docker_host]
        result = CliRunner().invoke(app, [*args, *options], input=stdin)
        output = result.stdout + result.stderr
        self.outputs.append(output)
        assert result.exit_code == code, output
        return output


def ids(client: docker.DockerClient) -> dict[str, str]:
    found = client.containers.list(all=True, filters={"label": "io.nebula.managed=true"})
    return {c.name: c.id for c in found}


def test_a_changed_secret_recreates_only_the_services_using_it_and_never_shows(
    tmp_path: Path,
    client: docker.DockerClient,
    docker_host: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    hook_app = (
        APP.format(image=servers.TEST_IMAGE)
        + "variables:\n  - {name: TOKEN, secret: true, required: true, expose_to_hooks: true}\n"
        + "values: {TOKEN: '${secret:app.token}'}\n"
        + "hooks:\n  post_install: ['echo token-bytes=$(printf %s \"${TOKEN}\" | wc -c) ${TOKEN}']\n"
    )
    other = APP.format(image=servers.TEST_IMAGE).replace("TOKEN: ${secret:app.token}\n", "")
    repo = write_repo(tmp_path / "repo", {"app": hook_app, "other": other})
    nebula = Cli(docker_host, database_url)

    out = nebula("plan", str(repo), code=2)  # no vault yet: a clear error, nothing applied
    assert "no secret 'app.token' in the vault" in out and "nebula secrets set app.token" in out
    nebula("secrets", "init")
    nebula("secrets", "set", "app.token", stdin=PLAIN)

    nebula("plan", str(repo))
    nebula("apply", str(repo))
    before = ids(client)
    assert set(before) == {"app-web", "app-side", "other-web", "other-side"}
    web = client.containers.get("app-web").attrs
    assert f"TOKEN={PLAIN}" in web["Config"]["Env"]  # Docker gets the value ...
    labels = json.dumps(web["Config"]["Labels"], ensure_ascii=False)
    assert PLAIN not in labels and "••••" in labels  # ... its labels only the stand-in
    with Store(database_url) as store:
        (deployment,) = store.deployments("app")
    # the hook saw the value (its length), its recorded output only the mask
    assert f"token-bytes={len(PLAIN)} ••••" in (deployment.hook_output or "")
    assert "No changes." in nebula("plan", str(repo))

    nebula("secrets", "set", "app.token", stdin=NEW)
    plan = json.loads(nebula("plan", str(repo), "--output", "json"))
    pending = [c for c in plan["changes"] if c["action"] != "noop"]
    assert [(c["action"], c["name"]) for c in pending] == [("update", "app-web")]
    assert pending[0]["reason"].startswith("environment TOKEN changed (secret ••••")

    # a wrong master key: a clear error, and nothing is touched
    monkeypatch.setenv("NEBULA_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    assert "wrong master key" in nebula("apply", str(repo), code=1)
    assert ids(client) == before
    monkeypatch.delenv("NEBULA_MASTER_KEY")

    nebula("apply", str(repo))
    after = ids(client)
    assert {name for name in after if after[name] != before[name]} == {"app-web"}
    assert f"TOKEN={NEW}" in client.containers.get("app-web").attrs["Config"]["Env"]
    nebula("status")
    nebula("status", "--output", "json")
    nebula("secrets", "list", "--repo", str(repo))

    written = "\n".join(nebula.outputs)
    assert PLAIN not in written and NEW not in written
    if database_url.startswith("sqlite:///"):
        db = Path(database_url.removeprefix("sqlite:///"))
        data = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert PLAIN.encode() not in data and NEW.encode() not in data


# -- the daemon ----------------------------------------------------------------------------------


def record_events(bus: Any) -> list[str]:
    """Every event `bus` publishes from now on, as JSON (what an event stream would send)."""
    published: list[str] = []
    publish = bus.publish

    def recording(kind: str, **data: object) -> None:
        published.append(json.dumps([kind, data], default=str, ensure_ascii=False))
        publish(kind, **data)

    bus.publish = recording
    return published


def test_the_daemon_rolls_out_a_secret_set_after_the_commit(
    tmp_path: Path,
    client: docker.DockerClient,
    docker_host: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """...and never shows it: not in its log, its events, its sync records or the database."""
    from nebula.daemon.config import DaemonConfig
    from nebula.daemon.core import Daemon
    from nebula.daemon.gitsync import GitSource
    from nebula.providers.docker import DockerProvider
    from nebula.secrets import open_vault
    from test_daemon import Repo, eventually

    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    repo = Repo(tmp_path)
    repo.push("needs a secret", {"packages/app.yaml": APP.format(image=servers.TEST_IMAGE)})
    config = DaemonConfig(
        source=str(repo.bare), data_dir=tmp_path / "data", poll_interval=3600, drift_interval=3600
    )
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    vault = open_vault(store)
    vault.init()
    provider = DockerProvider(docker_host)
    daemon = Daemon(config, store, provider, GitSource(str(repo.bare), tmp_path / "data" / "repo"))
    published = record_events(daemon.bus)
    caplog.set_level(logging.DEBUG)
    daemon.start()
    try:
        # the commit names a secret the vault lacks: a failed sync saying what to do
        eventually(
            lambda: bool(store.syncs(limit=1)) and store.syncs(limit=1)[0].status == "failed"
        )
        assert "nebula secrets set app.token" in "\n".join(store.syncs(limit=1)[0].errors)
        vault.set("app.token", PLAIN)  # no new commit: the next sync sees the vault changed
        daemon.request_sync("manual")
        eventually(lambda: store.syncs(limit=1)[0].status == "succeeded", timeout=60)
        first = ids(client)
        env = client.containers.get("app-web").attrs["Config"]["Env"]
        assert f"TOKEN={PLAIN}" in env
        vault.set("app.token", NEW)
        daemon.request_sync("manual")
        eventually(lambda: len(store.syncs(limit=10)) == 3, timeout=60)
        eventually(lambda: store.syncs(limit=1)[0].status == "succeeded", timeout=60)
        assert f"TOKEN={NEW}" in client.containers.get("app-web").attrs["Config"]["Env"]
        assert ids(client)["app-side"] == first["app-side"]
        recorded = json.dumps([s.__dict__ for s in store.syncs(limit=10)], default=str)
        assert PLAIN not in recorded and NEW not in recorded
    finally:
        daemon.stop()
        provider.close()
        store.close()
    assert any("app-web" in event for event in published)
    shown = "\n".join([*published, caplog.text])
    data = b"".join(p.read_bytes() for p in tmp_path.glob("nebula.db*"))
    for value in (PLAIN, NEW):
        assert value not in shown and value.encode() not in data


def test_a_stand_in_next_to_other_text_is_revealed_exactly() -> None:
    from nebula.kinds.packages.types import reveal, stand_ins_in

    values = {"••••0123456789ab": "v@lue", "••••ba9876543210": "other"}
    text = "a=••••0123456789abff;b=••••ba9876543210••••0123456789ab;c=••••ffffffffffff"
    assert reveal(text, values) == "a=v@lueff;b=otherv@lue;c=••••ffffffffffff"
    assert stand_ins_in(text)[:2] == ["••••0123456789ab", "••••ba9876543210"]
