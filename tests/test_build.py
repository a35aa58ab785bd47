"""Compose `build:`: an image built by the node's Docker Engine from a folder of the
installation's folder, tagged by the context's content so an unchanged context is never built
again, and refused at its line when the context cannot be used."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.engine.memo import input_key
from nebula.errors import ConfigError

SITE = """compose:
  services:
    web:
      build: {context: site, args: {GREETING: "${GREETING}"}}
      environment: {MODE: "${MODE}"}
      healthcheck: {test: [CMD, wget, -q, -O, /dev/null, "http://127.0.0.1:8080/"], interval: 1s}
variables:
  - {name: GREETING, default: hello}
  - {name: MODE, default: one}
"""

DOCKERFILE = """FROM {image}
ARG GREETING
COPY index.html /www/index.html
RUN echo "$GREETING from the build" | tee /www/greeting.txt
"""


def write(root: Path, name: str, text: str, files: dict[str, str] | None = None) -> None:
    """Installation `name` of the repo at `root`, with the files of its folder."""
    (root / "packages" / name).mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text("defaults: {health_timeout: 30s}\n")
    (root / "packages" / f"{name}.yaml").write_text(text)
    for path, content in (files or {}).items():
        (root / "packages" / name / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "packages" / name / path).write_text(content)


@pytest.fixture
def engine(docker_host: str, test_image: str) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    yield client
    client.close()


class Nebula:
    def __init__(self, root: Path, docker_host: str) -> None:
        self.root = root
        self.options = ["--docker-host", docker_host]
        self.database = ["--database-url", f"sqlite:///{root}/nebula.db"]

    def __call__(self, command: str, code: int = 0) -> dict[str, Any]:
        extra = self.database if command == "apply" else []
        result = CliRunner().invoke(
            app, [command, str(self.root), *self.options, *extra, "--output", "json"]
        )
        assert result.exit_code == code, result.stdout + result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def run(engine: docker.APIClient, container: str, *command: str) -> str:
    exec_id = engine.exec_create(container, list(command))
    return engine.exec_start(exec_id).decode()


def test_a_built_service_runs_and_only_a_changed_context_is_built_again(
    tmp_path: Path, engine: docker.APIClient, docker_host: str, test_image: str
) -> None:
    site = {"site/Dockerfile": DOCKERFILE.format(image=test_image), "site/index.html": "v1\n"}
    write(tmp_path, "app", SITE, site)
    nebula = Nebula(tmp_path, docker_host)
    (planned,) = [c for c in nebula("plan")["changes"] if c["name"] == "app-web"]
    assert "(nebula-build/app-web:" in planned["reason"], planned
    assert planned["reason"].endswith(", built from site)"), planned

    applied = nebula("apply")
    (web,) = applied["installations"]
    assert web["ok"], web
    assert "hello from the build" in web["builds"]["app-web"]  # the build's output
    page = "http://127.0.0.1:8080/"
    assert run(engine, "app-web", "wget", "-q", "-O", "-", f"{page}index.html") == "v1\n"
    assert run(engine, "app-web", "cat", "/www/greeting.txt") == "hello from the build\n"
    first = engine.inspect_container("app-web")
    assert first["Config"]["Image"].startswith("nebula-build/app-web:")

    # unchanged context: nothing to do
    assert {c["action"] for c in nebula("plan")["changes"]} == {"noop"}
    # a change outside the build recreates the container from the image already built
    (tmp_path / "packages" / "app.yaml").write_text(SITE.replace("default: one", "default: two"))
    (web,) = nebula("apply")["installations"]
    assert web["ok"] and web["builds"] == {}, web
    second = engine.inspect_container("app-web")
    assert second["Id"] != first["Id"]
    assert (second["Config"]["Image"], second["Image"]) == (
        first["Config"]["Image"],
        first["Image"],
    )

    # a file of the context edited: built again, and the container recreated with it
    (tmp_path / "packages" / "app" / "site" / "index.html").write_text("v2\n")
    changes = nebula("plan")["changes"]
    assert [(c["action"], c["name"]) for c in changes if c["action"] != "noop"] == [
        ("update", "app-web")
    ]
    (web,) = nebula("apply")["installations"]
    assert web["ok"] and "app-web" in web["builds"], web
    third = engine.inspect_container("app-web")
    assert third["Config"]["Image"] != first["Config"]["Image"]
    assert run(engine, "app-web", "wget", "-q", "-O", "-", f"{page}index.html") == "v2\n"


def test_a_failing_build_fails_its_installation_only_with_the_builds_last_lines(
    tmp_path: Path, engine: docker.APIClient, docker_host: str, test_image: str
) -> None:
    broken = f"FROM {test_image}\nRUN echo checking the sources && false\n"
    write(
        tmp_path, "broken", "compose:\n  services:\n    web: {build: .}\n", {"Dockerfile": broken}
    )
    write(tmp_path, "fine", f"compose:\n  services:\n    web: {{image: '{test_image}'}}\n")
    nebula = Nebula(tmp_path, docker_host)

    outcome = {i["name"]: i for i in nebula("apply", code=1)["installations"]}
    assert outcome["fine"]["ok"]
    assert engine.inspect_container("fine-web")["State"]["Running"]
    error = outcome["broken"]["error"]
    assert "build failed" in error and "checking the sources" in error, error
    assert "returned a non-zero code: 1" in error, error
    # the next apply tries it again
    pending = [c["name"] for c in nebula("plan")["changes"] if c["action"] != "noop"]
    assert pending == ["broken-web"]


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def test_contexts_that_cannot_be_built_are_refused_at_their_line(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the build\n")
    write(
        tmp_path,
        "app",
        """compose:
  services:
    up: {build: ../other}
    absolute: {build: /srv/app}
    remote: {build: "https://github.com/example/app.git#main"}
    nodockerfile: {build: {context: src, dockerfile: ../Dockerfile}}
    leaking: {build: leaky}
    secret: {build: {context: src, args: ["TOKEN=${secret:token}"]}}
    file: {build: Dockerfile}
    sshed: {build: {context: src, ssh: [default]}}
    neither: {ports: ["80"]}
""",
        {"src/Dockerfile": "FROM scratch\n", "Dockerfile": "FROM scratch\n"},
    )
    (tmp_path / "packages" / "app" / "leaky").mkdir()
    os.symlink(outside, tmp_path / "packages" / "app" / "leaky" / "Dockerfile")
    folder = (tmp_path / "packages" / "app").resolve()
    assert errors_of(tmp_path) == [
        "packages/app.yaml:10:35: compose.services.sshed.build.ssh: 'ssh' is a compose key "
        "Nebula does not support yet: no SSH agent is forwarded to builds; put what the build "
        "fetches into the context folder",
        "packages/app.yaml:11:5: compose.services.neither: give `image:` (an image to pull), "
        "or `build:` (a context folder of the installation's folder to build it from)",
    ]
    text = (tmp_path / "packages" / "app.yaml").read_text()
    (tmp_path / "packages" / "app.yaml").write_text(text.split("    sshed")[0])
    assert errors_of(tmp_path) == [
        f"packages/app.yaml:3:10: compose.services.up.build: '../other': resolves outside "
        f"{folder}; refused",
        "packages/app.yaml:4:16: compose.services.absolute.build: '/srv/app' is absolute: name "
        "a folder inside packages/app/",
        "packages/app.yaml:5:14: compose.services.remote.build: 'https://gith'… (39 chars) is "
        "a remote build context, which Nebula does not fetch; put the sources in a folder of "
        "packages/app/ and give its path",
        "packages/app.yaml:6:42: compose.services.nodockerfile.build.dockerfile: no Dockerfile "
        "'../Dockerfile' in the build context 'src'; add it to that folder, or give "
        "`dockerfile:` the path of one inside it",
        "packages/app.yaml:7:15: compose.services.leaking.build: 'leaky': Dockerfile: a "
        "symlink; a build context holds only files and folders: copy the file in; refused",
        "packages/app.yaml:8:43: compose.services.secret.build.args[0]: a secret cannot be a "
        "build argument: the image keeps its build arguments in its history; pass the secret "
        "as environment instead",
        "packages/app.yaml:9:12: compose.services.file.build: 'Dockerfile' is a file: give the "
        "folder holding the Dockerfile",
    ]


def test_the_tag_follows_the_contents_and_how_it_is_built(tmp_path: Path) -> None:
    compose = """compose:
  services:
    web:
      image: example/web:dev
      build: {context: ., dockerfile: build/Dockerfile, args: [A=1], target: final}
"""
    write(tmp_path, "app", compose, {"build/Dockerfile": "FROM scratch\n", "a.txt": "a\n"})

    def web() -> tuple[str, str]:
        (installation,) = load_desired(tmp_path).installations
        (container,) = installation.containers
        assert container.build is not None
        return container.image, container.build.also_tagged or ""

    first, also = web()
    assert first.startswith("nebula-build/app-web:") and also == "example/web:dev"
    assert web()[0] == first  # read twice, the same
    os.chmod(tmp_path / "packages" / "app" / "a.txt", 0o755)
    assert web()[0] != first  # a mode is content
    tags = {web()[0]}
    (tmp_path / "packages" / "app.yaml").write_text(compose.replace("A=1", "A=2"))
    tags.add(web()[0])
    (tmp_path / "packages" / "app" / "b.txt").write_text("new\n")
    tags.add(web()[0])
    assert len(tags) == 3


def test_a_remembered_plan_is_not_replayed_once_a_context_changed(tmp_path: Path) -> None:
    files = {"site/Dockerfile": "FROM scratch\n", "site/big.bin": "x" * (2 * 1024 * 1024)}
    write(tmp_path, "app", "compose:\n  services:\n    web: {build: site}\n", files)
    site = tmp_path / "packages" / "app" / "site"
    keys = {input_key(tmp_path, [])}
    os.chmod(site / "Dockerfile", 0o600)  # a mode is part of the context
    keys.add(input_key(tmp_path, []))
    (site / "big.bin").write_text("y" * (3 * 1024 * 1024))  # larger than a config file may be
    keys.add(input_key(tmp_path, []))
    assert len(keys) == 3


def test_a_context_too_large_to_send_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "app", "compose:\n  services:\n    web: {build: .}\n", {"Dockerfile": "x\n"})
    with open(tmp_path / "packages" / "app" / "disk.img", "wb") as image:
        image.truncate(65 * 1024 * 1024)  # sparse: its size is what counts
    assert errors_of(tmp_path) == [
        "packages/app.yaml:3:11: compose.services.web.build: '.': its files hold more than "
        "67,108,864 bytes, the most a build context may; refused"
    ]
