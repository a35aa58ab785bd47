"""Package hooks, applied for real against Docker: post_install, pre_upgrade, post_upgrade and
pre_uninstall with the installation's variables in their environment, a timeout, recorded runs,
failures marking the installation, and secrets only where the package allows them.

Hook lines write `$$VAR` (a literal `$` for the shell) so they read the environment, not
values Nebula interpolated into the line.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.apply import ApplyResult, apply_plan
from nebula.kinds.packages.diff import Snapshot
from nebula.providers.docker import DockerProvider
from nebula.secrets import open_vault
from nebula.secrets.keys import KeyFile
from nebula.store import Store, installation_runs

API_KEY = "ak-7d1f0c2e9b"  # a secret the package gives its hooks
TOKEN = "tk-55e3a90b1c"  # a secret it does not

PACKAGE = """name: hooked
version: "{version}"
compose:
  services:
    web:
      image: {image}
      command: [httpd, -f, -p, "8080", -h, "{root}"]
      ports: ["127.0.0.1:${{PORT}}:8080"]
      environment: {{TOKEN: "${{TOKEN}}"}}
variables:
  - {{name: PORT, required: true}}
  - {{name: LOG, required: true}}
  - {{name: GREETING, default: hello}}
  - {{name: TOKEN, secret: true, required: true}}
  - {{name: API_KEY, secret: true, required: true, expose_to_hooks: true}}
health_checks:
  - {{name: web, url: "http://127.0.0.1:${{PORT}}{page}"}}
hooks:
{hooks}
"""

ENV = "greeting=$$GREETING token=$${TOKEN:-hidden} key=$$API_KEY inst=$$NEBULA_INSTALLATION"
HOOKS = f"""  post_install: ['echo "post_install {ENV}" | tee -a $LOG']
  pre_upgrade:
    - echo "pre_upgrade $$NEBULA_FROM_VERSION to $$NEBULA_TO_VERSION" >> $LOG
    - wget -q -O /dev/null http://127.0.0.1:$PORT/index.html && echo "old serves" >> $LOG
  post_upgrade:
    - wget -q -O /dev/null http://127.0.0.1:$PORT/www/index.html && echo "new serves" >> $LOG
  pre_uninstall:
    - echo "pre_uninstall {ENV}" >> $LOG
    - wget -q -O /dev/null http://127.0.0.1:$PORT/www/index.html && echo "still serves" >> $LOG
"""


# for tests whose store queries the first two already run on both backends
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Homelab:
    """A config repo with the `hooked` package in its own catalog, applied as nebula apply does."""

    def __init__(self, root: Path, docker_host: str, database_url: str, image: str) -> None:
        self.root = root
        self.port = _free_port()
        self.log = root / "hooks.log"
        self.image = image
        self.store = Store(database_url)
        self.provider = DockerProvider(docker_host)
        self.vault = open_vault(self.store, KeyFile(root / "master.key"))
        self.vault.init()
        self.vault.set("api", API_KEY)
        self.vault.set("tok", TOKEN)
        (root / "packages").mkdir(parents=True)
        (root / "nebula.yaml").write_text("defaults: {hook_timeout: 2s, health_timeout: 20s}\n")
        self.package("1.0", "/www", "/index.html")
        self.package("2.0", "/", "/www/index.html")

    def package(self, version: str, root: str, page: str, hooks: str = HOOKS) -> None:
        folder = self.root / "catalog" / "hooked"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{version}.yaml").write_text(
            PACKAGE.format(version=version, image=self.image, root=root, page=page, hooks=hooks)
        )

    def install(self, version: str) -> None:
        (self.root / "packages" / "app.yaml").write_text(
            f"package: hooked\nversion: '{version}'\nvalues:\n  PORT: '{self.port}'\n"
            f"  LOG: {self.log}\n  TOKEN: '${{secret:tok}}'\n  API_KEY: '${{secret:api}}'\n"
        )

    def apply(self) -> ApplyResult:
        desired = load_desired(self.root, self.vault.fingerprints)
        snapshot = Snapshot.of(desired, self.provider.observe())
        return apply_plan(snapshot, self.provider, self.store, vault=self.vault)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def container(self) -> str:
        ids = [c.id for c in self.provider.observe().containers if c.installation == "app"]
        return ids[0] if ids else ""

    def close(self) -> None:
        self.provider.close()
        self.store.close()


@pytest.fixture
def homelab(
    tmp_path: Path, docker_host: str, database_url: str, test_image: str
) -> Iterator[Homelab]:
    lab = Homelab(tmp_path / "homelab", docker_host, database_url, test_image)
    yield lab
    lab.close()
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    for container in engine.containers.list(all=True, filters={"label": "io.nebula.managed"}):
        container.remove(force=True)
    for network in engine.networks.list(filters={"label": "io.nebula.managed=true"}):
        network.remove()
    engine.close()


def test_each_hook_runs_at_its_moment_with_the_variables(homelab: Homelab) -> None:
    homelab.install("1.0")
    assert homelab.apply().ok
    assert homelab.lines() == [
        f"post_install greeting=hello token=hidden key={API_KEY} inst=app",
    ]
    first = homelab.container()

    homelab.install("2.0")
    result = homelab.apply()
    assert result.ok, result.installations[0].error
    assert homelab.container() != first
    assert homelab.lines()[1:] == ["pre_upgrade 1.0 to 2.0", "old serves", "new serves"]

    homelab.apply()  # nothing changed: no hook runs again
    assert len(homelab.lines()) == 4

    (homelab.root / "packages" / "app.yaml").unlink()
    assert homelab.apply().ok
    assert homelab.container() == ""
    # pre_uninstall ran while the container still served; the secret given to hooks is not
    # kept in the store for it, so it is empty then
    assert homelab.lines()[4:] == [
        "pre_uninstall greeting=hello token=hidden key= inst=app",
        "still serves",
    ]

    runs = installation_runs.hook_runs(homelab.store, "app")
    assert [(r.hook, r.status, r.version) for r in reversed(runs)] == [
        ("post_install", "succeeded", "1.0"),
        ("pre_upgrade", "succeeded", "2.0"),
        ("post_upgrade", "succeeded", "2.0"),
        ("pre_uninstall", "succeeded", None),
    ]
    post_install = runs[-1]
    assert API_KEY not in post_install.output and TOKEN not in post_install.output
    assert "key=••••" in post_install.output  # the output is stored scrubbed


def test_a_failing_pre_upgrade_hook_marks_the_installation_and_changes_nothing(
    homelab: Homelab, database_url: str, docker_host: str
) -> None:
    failing = HOOKS.replace(
        "  pre_upgrade:\n", "  pre_upgrade:\n    - echo 'backup target unreachable' >&2; exit 3\n"
    )
    homelab.package("2.0", "/", "/www/index.html", failing)
    homelab.install("1.0")
    assert homelab.apply().ok
    before = homelab.container()

    homelab.install("2.0")
    (result,) = homelab.apply().installations
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("pre_upgrade hook failed (exit code 3):")
    assert "backup target unreachable" in result.error
    assert homelab.container() == before  # the containers were not touched
    (info,) = homelab.store.installations()
    assert info.status == "error"
    assert "pre_upgrade hook failed (exit code 3)" in (info.status_reason or "")
    (run, *_) = installation_runs.hook_runs(homelab.store, "app")
    assert (run.hook, run.status, run.exit_code) == ("pre_upgrade", "failed", 3)

    status = CliRunner().invoke(
        app,
        ["status", "--database-url", database_url, "--docker-host", docker_host],
        env={"COLUMNS": "250"},
    )
    assert "pre_upgrade hook failed (exit code 3)" in status.output
    report = CliRunner().invoke(
        app,
        [
            "status",
            "--output",
            "json",
            "--database-url",
            database_url,
            "--docker-host",
            docker_host,
        ],
    )
    hooks = {h["hook"]: h for h in json.loads(report.stdout)["installations"][0]["hooks"]}
    assert (hooks["post_install"]["status"], hooks["pre_upgrade"]["status"]) == (
        "succeeded",
        "failed",
    )
    assert "backup target unreachable" in hooks["pre_upgrade"]["output"]


@SQLITE_ONLY
def test_a_hook_past_its_timeout_is_stopped_and_reported(homelab: Homelab) -> None:
    slow = HOOKS.replace("  post_install: [", "  post_install: ['sleep 30', ")
    homelab.package("1.0", "/www", "/index.html", slow)
    homelab.install("1.0")
    (result,) = homelab.apply().installations
    assert not result.ok
    assert result.seconds < 20
    assert result.error is not None and "post_install hook failed (timed out)" in result.error
    (run,) = installation_runs.hook_runs(homelab.store, "app")
    assert (run.status, run.exit_code) == ("timed_out", None)
    assert "timed out after 2s" in run.output
    # not marked done: the next apply tries again
    assert homelab.store.installations()[0].status == "error"


@SQLITE_ONLY
def test_a_failing_pre_uninstall_hook_keeps_the_containers(homelab: Homelab) -> None:
    refusing = HOOKS.replace(
        "  pre_uninstall:\n", "  pre_uninstall:\n    - echo 'export first' && false\n"
    )
    homelab.package("1.0", "/www", "/index.html", refusing)
    homelab.install("1.0")
    assert homelab.apply().ok
    running = homelab.container()

    (homelab.root / "packages" / "app.yaml").unlink()
    (result,) = homelab.apply().installations
    assert not result.ok
    assert homelab.container() == running
    (info,) = homelab.store.installations()
    assert info.status == "error"
    assert (info.status_reason or "").startswith("pre_uninstall hook failed (exit code 1):")
    assert "containers kept until the hook succeeds" in (info.status_reason or "")


@SQLITE_ONLY
def test_a_hook_may_not_use_a_secret_its_package_keeps_from_hooks(homelab: Homelab) -> None:
    leaky = HOOKS.replace("  post_install: [", "  post_install: ['echo ${TOKEN}', ")
    homelab.package("1.0", "/www", "/index.html", leaky)
    homelab.install("1.0")
    with pytest.raises(ConfigError) as caught:
        load_desired(homelab.root, homelab.vault.fingerprints)
    (issue,) = caught.value.issues
    assert str(issue).startswith("catalog/hooked/1.0.yaml:")
    assert "hooks.post_install[0]: this hook uses a secret" in str(issue)
    assert "`expose_to_hooks: true`" in str(issue)
    # the exposed one is fine
    homelab.package("1.0", "/www", "/index.html", leaky.replace("${TOKEN}", "${API_KEY}"))
    (desired,) = load_desired(homelab.root, homelab.vault.fingerprints).installations
    env = dict(desired.hook_env)
    assert "TOKEN" not in env and env["API_KEY"].startswith("••••")  # a stand-in until apply
