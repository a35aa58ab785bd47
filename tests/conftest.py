"""Shared fixtures: real servers, started once per session (see servers.py).

- `docker_host`: `unix://` URL of a Docker Engine (a private dockerd per test process, or
  NEBULA_TEST_DOCKER_HOST).
- `test_image`: tag of the busybox httpd image (serves tests/image/www on port 8080).
- `caddy`: a Caddy with its admin API on loopback (`servers.CaddyServer`).
- `powerdns`: a PowerDNS authoritative server, HTTP API and DNS on loopback.
- `pg_url`: SQLAlchemy URL of the `postgres` database of a throwaway PostgreSQL cluster.
- `database_url`: an empty database, once on SQLite and once on PostgreSQL, so a test that takes
  it runs on both backends.

Tests using them get the `docker` / `postgres` markers, so `-m "not docker"` deselects them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import servers
from llm_servers import llm_server, ollama_server  # noqa: F401  (the real model's servers)

# The CLI's consoles are made once per process and read COLUMNS then: every test process (one
# per xdist worker) gets the same width, whatever test happens to print first.
os.environ["COLUMNS"] = "200"
# No OS keyring unless a test sets one (keyring picks its backend once per process, so a test
# that set one would otherwise decide where later tests' master keys go).
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    with servers.docker_daemon() as url:
        yield url


@pytest.fixture(autouse=True)
def _leave_the_engine_empty(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the Docker Engine, remove what Nebula made there, so the next
    test starts from an empty engine whatever this one left behind."""
    yield
    if "docker_host" in request.fixturenames:
        servers.remove_managed(request.getfixturevalue("docker_host"))


@pytest.fixture(scope="session")
def test_image(docker_host: str) -> str:
    return servers.build_test_image(docker_host)


@pytest.fixture(scope="session")
def caddy() -> Iterator[servers.CaddyServer]:
    with servers.caddy_server() as server:
        yield server


@pytest.fixture(scope="session")
def powerdns() -> Iterator[servers.PowerDnsServer]:
    with servers.powerdns_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with servers.postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/nebula.db"
        return
    # Looked up lazily, so a SQLite-only selection never starts PostgreSQL.
    with servers.fresh_database(request.getfixturevalue("pg_url")) as url:
        yield url


def pytest_configure(config: pytest.Config) -> None:
    # Each xdist worker its own network: its servers and Docker Engine never meet another's.
    # An engine named by NEBULA_TEST_DOCKER_HOST publishes its ports on this host's: stay here.
    if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("NEBULA_TEST_DOCKER_HOST"):
        servers.own_network_namespace()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups (`--dist loadgroup`)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec else None
        if "docker_host" in fixtures:
            item.add_marker(pytest.mark.docker)
            # Each xdist worker starts a private dockerd of its own, so these tests run on any
            # worker. An engine named by NEBULA_TEST_DOCKER_HOST is one for all of them: they
            # then run on one worker, one after another (`--dist loadgroup`).
            if os.environ.get("NEBULA_TEST_DOCKER_HOST"):
                item.add_marker(pytest.mark.xdist_group("docker"))
        if "pg_url" in fixtures or backend == "postgresql":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True, scope="session")
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nebula's cache and data dirs live in the test's tmp dir, never in the user's home."""
    root = tmp_path_factory.mktemp("user")
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    os.environ["XDG_DATA_HOME"] = str(root / "data")
    os.environ["XDG_CONFIG_HOME"] = str(root / "config")  # the vault's key file goes here
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def other_docker_host(docker_host: str) -> Iterator[str]:
    """A second private Docker Engine (another node's), with the test image built on it."""
    with servers.more_docker_daemons(1) as (url,):
        servers.build_test_image(url)
        yield url
