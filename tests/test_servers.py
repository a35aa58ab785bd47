"""The server fixtures themselves work: Docker serves the test image, both databases connect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest
import sqlalchemy as sa
from docker.models.networks import Network

import servers


@pytest.fixture
def client(docker_host: str) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    yield c
    c.close()


@pytest.fixture
def network(client: docker.DockerClient) -> Iterator[Network]:
    # Published ports need a user-defined network: the private daemon has no default bridge.
    net = client.networks.create(
        f"nebula-test-{uuid.uuid4().hex[:8]}", driver="bridge", labels=servers.labels()
    )
    yield net
    net.reload()
    for container in net.containers:
        container.remove(force=True)
    net.remove()


def test_container_answers_http_on_published_loopback_port(
    client: docker.DockerClient, test_image: str, network: Network
) -> None:
    web = client.containers.run(
        test_image,
        detach=True,
        init=True,
        network=network.name,
        labels=servers.labels(),
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    web.reload()
    port = web.ports["8080/tcp"][0]["HostPort"]

    status, body = servers.http_get(f"http://127.0.0.1:{port}/")

    assert status == 200
    assert "nebula-test-ok" in body


def test_containers_reach_each_other_by_name(
    client: docker.DockerClient, test_image: str, network: Network
) -> None:
    client.containers.run(
        test_image,
        name=f"{network.name}-web",
        detach=True,
        init=True,
        network=network.name,
        labels=servers.labels(),
    )
    # busybox wget: never -T (it segfaults); retry until the server listens.
    fetch = f"for i in $(seq 50); do wget -q -O - http://{network.name}-web:8080/ && exit 0; sleep 0.1; done; exit 1"
    output = client.containers.run(
        test_image, ["sh", "-c", fetch], network=network.name, labels=servers.labels(), remove=True
    )

    assert b"nebula-test-ok" in output


def test_database_url_accepts_a_connection(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_pg_url_is_postgresql_15_or_newer(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version_num")).scalar()
    finally:
        engine.dispose()
    assert int(str(version)) >= 150000
