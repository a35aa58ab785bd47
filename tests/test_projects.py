"""Projects: the sample of examples/project-hello pushed to a local bare git repo, built by a
real dockerd (BuildKit) and served through a real Caddy; a second push deployed while a load
loop requests the hostname (no request fails); a broken push fails and changes nothing; a
rollback switches back without building."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from nebula.engine import pipeline
from nebula.engine.load import load_desired
from nebula.engine.projects import ProjectService
from nebula.errors import ConfigError, NotFoundError, StateError
from nebula.kinds.base import Desired, World
from nebula.kinds.projects.detect import NoDockerfileError, detected_dockerfile
from nebula.kinds.projects.source import ProjectSource
from nebula.providers.docker import DockerProvider
from nebula.store import Store
from nebula.store.projects import ProjectStore
from nebula.store.records import ProjectRecord
from servers import CaddyServer, _which

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "project-hello"
HOST = "hello.nebula.lan"
BROKEN = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "false"]\n'


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class Sample:
    """The sample project's working copy, pushing to a bare repo (its `git_url`)."""

    bare: Path
    work: Path

    def push(self, message: str, files: dict[str, str]) -> str:
        for name, text in files.items():
            (self.work / name).write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-qm", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    bare, work = tmp_path / "hello.git", tmp_path / "hello"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("config", "README.md"))
    shutil.copy(_which("busybox", "busybox-static"), work / "busybox")
    git("init", "-q", "-b", "main", cwd=work)
    git("config", "user.email", "dev@example.com", cwd=work)
    git("config", "user.name", "Dev", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    return Sample(bare, work)


def config_repo(root: Path, docker_host: str, caddy: CaddyServer, project: str) -> Path:
    (root / "projects").mkdir(parents=True, exist_ok=True)
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    (root / "nebula.yaml").write_text(json.dumps({"docker": {"host": docker_host}, "proxy": proxy}))
    (root / "projects" / "hello.yaml").write_text(textwrap.dedent(project))
    return root


@dataclass
class LoadLoop:
    """Requests the hostname through Caddy without pause, in a thread, counting failures.

    Each request has a connection of its own: Caddy closes idle keep-alive connections when
    its config changes (any change, not only a deployment's), which browsers and curl answer
    by retrying on a new connection; a client without that retry would count Caddy's reload,
    not the deployment."""

    caddy: CaddyServer
    root_pem: str
    bodies: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        context = ssl.create_default_context(cadata=self.root_pem)
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(verify=context, timeout=10.0, limits=fresh) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(
                        f"https://127.0.0.1:{self.caddy.https_port}/",
                        headers={"Host": HOST},
                        extensions={"sni_hostname": HOST},
                    )
                    if response.status_code == 200:
                        self.bodies.append(response.text)
                    else:
                        self.failures.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))


@contextlib.contextmanager
def load_loop(caddy: CaddyServer) -> Iterator[LoadLoop]:
    loop = LoadLoop(caddy, caddy.internal_root())
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop._stop.set()
        thread.join(timeout=30)


def serve(caddy: CaddyServer) -> str:
    with httpx.Client(verify=ssl.create_default_context(cadata=caddy.internal_root())) as client:
        response = client.get(
            f"https://127.0.0.1:{caddy.https_port}/",
            headers={"Host": HOST},
            extensions={"sni_hostname": HOST},
        )
    assert response.status_code == 200, response.text
    return response.text


PROJECT = """\
    name: hello
    git_url: {url}
    drain: 1s
    health: {{path: /, interval: 0.1s, timeout: 30s}}
    keep: 3
    environments:
      production:
        expose: hello.nebula.lan
        values: {{GREETING: hi, TOKEN: "${{secret:hello-token}}"}}
"""


@pytest.fixture
def engine(docker_host: str) -> Iterator[DockerProvider]:
    """The engine, left without the projects' containers, networks and images afterwards
    (they are not labelled as installations, which the suite's own sweep removes)."""
    provider = DockerProvider(docker_host)
    yield provider
    api, ours = provider.api, {"label": ["io.nebula.project"]}
    for container in api.containers(all=True, filters=ours):
        api.remove_container(container["Id"], force=True)
    for network in api.networks(filters=ours):
        api.remove_network(network["Id"])
    for image in api.images(name="nebula-project/hello"):
        api.remove_image(image["Id"], force=True)
    provider.close()


@dataclass
class Hello:
    """The sample deployed once (its first commit live), and what drives it."""

    caddy: CaddyServer
    sample: Sample
    engine: DockerProvider
    service: ProjectService
    desired: Desired
    world: World
    first: str

    def sync(self) -> pipeline.Outcome:
        """What nebulad's sync runs for projects: routes, then the projects kind."""
        return pipeline.run(self.desired, self.world, only=["routes", "projects"])

    def containers(self) -> list[dict[str, Any]]:
        filters = {"label": ["io.nebula.project=hello"]}
        found: list[dict[str, Any]] = self.engine.api.containers(all=True, filters=filters)
        return found

    def images(self) -> dict[str, int]:
        found = self.engine.api.images(name="nebula-project/hello")
        return {i["RepoTags"][0]: i["Created"] for i in found}


@pytest.fixture
def hello(
    engine: DockerProvider, caddy: CaddyServer, sample: Sample, tmp_path: Path
) -> Iterator[Hello]:
    caddy.reset()
    first = sample.push("first page", {"www/index.html": "version one\n"})
    root = config_repo(tmp_path / "config", engine.base_url, caddy, PROJECT.format(url=sample.bare))
    desired = load_desired(root)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    secrets = {"hello-token": "s3cret-value"}
    world = World(lambda: store, secrets.__getitem__, store_open=True, docker_provider=engine)
    service = ProjectService(lambda: desired, lambda: world)
    lab = Hello(caddy, sample, engine, service, desired, world, first)
    assert not lab.sync().errors  # the first sync builds the branch's head and routes to it
    yield lab
    store.close()


def test_a_push_is_built_served_and_replaced_without_a_failed_request(hello: Hello) -> None:
    assert serve(hello.caddy) == "version one\n"
    [live] = hello.service.deployments("hello")
    image = f"nebula-project/hello:{hello.first[:12]}"
    assert (live.status, live.commit, live.image) == ("live", hello.first, image)
    assert "#" in hello.service.build_logs(live.id)  # BuildKit's progress, kept with it
    [container] = hello.containers()
    env = hello.engine.inspect(container["Id"])["Config"]["Env"]
    assert {"GREETING=hi", "TOKEN=s3cret-value"} <= set(env)  # the secret, for Docker only
    [stored] = hello.service.projects()
    assert "s3cret-value" not in json.dumps(stored.definition)

    # a second push deploys while requests keep coming: none fails, the new page takes over
    hello.sample.push("second page", {"www/index.html": "version two\n"})
    with load_loop(hello.caddy) as loop:
        time.sleep(0.3)
        assert not hello.sync().errors
        time.sleep(0.5)
    assert loop.failures == []
    assert loop.bodies[0] == "version one\n"
    assert loop.bodies[-1] == "version two\n"
    assert set(loop.bodies) == {"version one\n", "version two\n"}
    assert len(hello.containers()) == 1  # the old one drained and stopped
    assert not hello.sync().plan.part("projects").has_changes


def test_a_broken_push_changes_nothing_and_rollback_needs_no_build(hello: Hello) -> None:
    second = hello.sample.push("second page", {"www/index.html": "version two\n"})
    assert not hello.sync().errors

    # a broken Dockerfile fails the build; what serves keeps serving
    broken = hello.sample.push("break the build", {"Dockerfile": BROKEN})
    assert hello.sync().errors
    failed = hello.service.deployments("hello")[0]
    assert (failed.status, failed.commit) == ("failed", broken)
    assert "build failed" in str(failed.error)
    assert "exit code: 1" in hello.service.build_logs(failed.id)
    assert serve(hello.caddy) == "version two\n"
    assert not hello.sync().plan.part("projects").has_changes  # a failed commit: not rebuilt

    # rollback: back to the version live before, from its kept image, without a build
    images = hello.images()
    back = hello.service.rollback("hello", "production")
    first = hello.first
    assert (back.status, back.commit, back.summary) == ("live", first, f"rollback to {first[:12]}")
    assert hello.service.build_logs(back.id) == ""
    assert serve(hello.caddy) == "version one\n"
    assert hello.images() == images  # no image built or rebuilt
    assert not hello.sync().plan.part("projects").has_changes  # the rollback stays
    assert hello.service.rollback("hello", "production", to=second[:8]).commit == second
    assert serve(hello.caddy) == "version two\n"
    assert len(hello.containers()) == 1
    with pytest.raises(StateError, match="no kept image"):
        hello.service.rollback("hello", "production", to="0123456")
    with pytest.raises(NotFoundError, match="no environment 'staging'"):
        hello.service.deploy("hello", "staging")


def test_project_files_are_checked_at_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "projects").mkdir()
    (tmp_path / "nebula.yaml").write_text("{}\n")
    (tmp_path / "projects" / "web.yaml").write_text(
        textwrap.dedent(
            """\
            name: web
            git_url: https://git.example.com/web.git
            dockerfle: Dockerfile
            build_args: {TOKEN: "${secret:web-token}"}
            environments:
              production:
                expose: web.example.com
                node: elsewhere
            """
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    messages = {(i.file, i.line, i.message) for i in caught.value.issues}
    assert ("projects/web.yaml", 3, "unknown field; did you mean 'dockerfile'?") in messages
    assert any(line == 4 and "stays in the image's history" in m for _, line, m in messages)


def test_project_node_and_hostname_are_checked(tmp_path: Path) -> None:
    (tmp_path / "projects").mkdir()
    (tmp_path / "nebula.yaml").write_text("{}\n")
    for name in ("one", "two"):
        (tmp_path / "projects" / f"{name}.yaml").write_text(
            textwrap.dedent(
                f"""\
                name: {name}
                path: code
                environments:
                  production:
                    expose: same.example.com
                    node: elsewhere
                """
            )
        )
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    found = {(i.file, i.line, i.message.split(" (")[0].split(";")[0]) for i in caught.value.issues}
    assert ("projects/one.yaml", 2, "no folder 'code' in the config repo") in found
    assert ("projects/one.yaml", 6, "no node 'elsewhere' in nebula.yaml") in found
    (tmp_path / "code").mkdir()
    (tmp_path / "projects" / "one.yaml").write_text(
        "name: one\npath: code\nenvironments:\n  production: {expose: same.example.com}\n"
    )
    (tmp_path / "projects" / "two.yaml").write_text(
        "name: two\npath: code\nenvironments:\n  staging: {expose: same.example.com}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_desired(tmp_path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line) == ("projects/two.yaml", 4)
    assert "already exposed by project one (production)" in issue.message


def test_an_exposed_environment_runs_on_the_edge_node_when_there_are_several(
    tmp_path: Path,
) -> None:
    (tmp_path / "projects").mkdir()
    (tmp_path / "code").mkdir()
    (tmp_path / "nebula.yaml").write_text(
        "nodes:\n  - {name: nas, address: 10.0.0.1}\n  - {name: rig, address: 10.0.0.2}\n"
        "proxy: {node: rig}\n"
    )
    project = "name: web\npath: code\nenvironments:\n  production:\n    expose: web.lan\n"
    (tmp_path / "projects" / "web.yaml").write_text(project)
    with pytest.raises(ConfigError) as caught:  # on the first node by default, not the edge
        load_desired(tmp_path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line) == ("projects/web.yaml", 5)
    assert "runs on node 'nas'" in issue.message and "set `node: rig`" in issue.message
    (tmp_path / "projects" / "web.yaml").write_text(project + "    node: rig\n")
    assert [p.name for p in load_desired(tmp_path).projects] == ["web"]


@pytest.mark.parametrize(
    ("files", "base", "start"),
    [
        ({"index.html"}, "FROM busybox:1.36", 'CMD ["httpd", "-f", "-p", "3000", "-h", "/www"]'),
        ({"public/index.html", "README"}, "COPY public /www", "httpd"),
        ({"requirements.txt", "app.py"}, "FROM python:3.12-slim", 'CMD ["python", "app.py"]'),
        ({"pyproject.toml", "uv.lock", "main.py"}, "uv sync --frozen", 'CMD ["python", "main.py"]'),
        ({"package.json", "package-lock.json"}, "RUN npm ci --omit=dev", 'CMD ["npm", "start"]'),
        ({"package.json", "pnpm-lock.yaml"}, "FROM node:20-alpine", 'CMD ["pnpm", "start"]'),
    ],
)
def test_a_dockerfile_is_detected_for_plain_apps(files: set[str], base: str, start: str) -> None:
    text = detected_dockerfile(files, 3000)
    assert base in text
    assert start in text
    assert "3000" in text


def test_nothing_to_detect_says_what_would_do() -> None:
    with pytest.raises(NoDockerfileError, match="add a Dockerfile"):
        detected_dockerfile({"package.json", "README.md"}, 8080)  # no lockfile
    with pytest.raises(NoDockerfileError, match=r"main\.py or app\.py"):
        detected_dockerfile({"requirements.txt"}, 8080)


def test_deployments_are_recorded_on_both_backends(database_url: str) -> None:
    with Store(database_url) as store:
        projects = ProjectStore(store)
        record = ProjectRecord("web", "projects/web.yaml", "d1", {"git_url": "/srv/web.git"})
        projects.replace_projects([record])
        first = projects.start("web", "production", commit=None, summary="new", version="v1")
        assert first.status == "pending"
        projects.advance(first.id, "building", commit="a" * 40, image="nebula-project/web:aaa")
        projects.append_log(first.id, "#1 [1/2] COPY . /\n")
        projects.append_log(first.id, "#1 DONE\n")
        projects.finish(first.id, ok=True)
        second = projects.start("web", "production", commit="b" * 40, summary="new", version="v1")
        projects.advance(second.id, "building")
        assert projects.live("web", "production") == projects.get(first.id)
        assert projects.logs(first.id) == "#1 [1/2] COPY . /\n#1 DONE\n"
        assert projects.deployed("web", "production", "a" * 40, "v1")
        assert not projects.deployed("web", "production", "a" * 40, "v2")  # settings changed
        assert projects.fail_unfinished("interrupted") == 1
        assert projects.get(second.id).status == "failed"
        assert store.deployments() == []  # installations' deployments are apart
        projects.replace_projects([])  # the project removed: its deployments stay, by name
        assert projects.projects() == []
        assert [d.id for d in projects.deployments("web")] == [second.id, first.id]
        with pytest.raises(NotFoundError):
            projects.get("no-such-id")


def test_a_generated_dockerfile_leads_the_build_context(sample: Sample, tmp_path: Path) -> None:
    (sample.work / "Dockerfile").unlink()
    commit = sample.push("a static site", {"www/index.html": "hi\n", "index.html": "hi\n"})
    (tmp_path / "config" / "projects").mkdir(parents=True)
    (tmp_path / "config" / "nebula.yaml").write_text("{}\n")
    (tmp_path / "config" / "projects" / "site.yaml").write_text(
        f"name: site\ngit_url: {sample.bare}\nenvironments: {{production: {{}}}}\n"
    )
    [project] = load_desired(tmp_path / "config").projects
    source = ProjectSource(project, cache=tmp_path / "mirrors")
    assert source.head("main") == commit
    context, dockerfile, generated = source.context(commit)
    assert dockerfile == ".nebula.Dockerfile"
    assert generated is not None and "FROM busybox:1.36" in generated
    # the first header is the generated file's own (no pax header first): the engine reads a
    # context whose first header it cannot parse from its first bytes as a bare Dockerfile
    assert context[:18] == b".nebula.Dockerfile"
    assert context[156:157] == b"0"
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        names = set(tar.getnames())
        assert tar.extractfile(".nebula.Dockerfile").read().decode() == generated  # type: ignore[union-attr]
    assert {"index.html", "www/index.html", "busybox"} <= names


def test_a_project_in_the_config_repo_is_built_from_its_folder(
    engine: DockerProvider, tmp_path: Path
) -> None:
    root = tmp_path / "config"
    shutil.copytree(EXAMPLE, root / "apps" / "hello", ignore=shutil.ignore_patterns("config"))
    shutil.copy(_which("busybox", "busybox-static"), root / "apps" / "hello" / "busybox")
    (root / "projects").mkdir()
    (root / "nebula.yaml").write_text(json.dumps({"docker": {"host": engine.base_url}}))
    (root / "projects" / "hello.yaml").write_text(
        "name: hello\npath: apps/hello\nhealth: {interval: 0.1s}\nenvironments: {development: {}}\n"
    )
    desired = load_desired(root)
    store = Store(f"sqlite:///{tmp_path}/nebula.db")
    world = World(lambda: store, store_open=True, docker_provider=engine)
    service = ProjectService(lambda: desired, lambda: world)
    ProjectStore(store).replace_projects([p.record for p in desired.projects])
    deployed = service.deploy("hello", "development")
    assert deployed.status == "live", deployed.error
    assert deployed.commit is not None and len(deployed.commit) == 40  # the folder's digest
    [container] = engine.api.containers(filters={"label": ["io.nebula.project=hello"]})
    network = engine.inspect(container["Id"])["NetworkSettings"]["Networks"]
    address = network["project-hello-development"]["IPAddress"]
    page = httpx.get(f"http://{address}:8080/", timeout=10).text
    assert page == (EXAMPLE / "www" / "index.html").read_text()
    again = service.deploy("hello", "development")  # the same files: the same image
    assert "not building it again" in service.build_logs(again.id)
    store.close()
