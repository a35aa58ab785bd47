"""Projects through a real nebulad's API: declared, changed and removed by commits to the config
repo, their files read and written through commits with the caller as author, and nothing
outside a project reachable through the files routes.

nebulad follows a bare config repo and runs on a private Docker Engine; users log in over
its TCP API (ada an operator, vic a viewer). A `path:` project's code is a folder of the
config repo; a `git_url:` project's is a bare repo of its own.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.identity import accounts
from nebula.identity.tokens import ACCESS_TTL, issue_access_token, load_signing_key
from nebula.store import Store
from nebula.store.identity import login_user
from test_daemon_api import free_port

PASSWORD = "correct horse battery staple"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}
SITE = """\
name: site
path: apps/site
port: 8080
environments:
  production:
    expose: site.example.test
"""
HELLO = """\
name: hello
git_url: {url}
port: 8080
environments:
  production:
    expose: hello.example.test
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=os.environ | GIT_ENV,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@dataclass
class Homelab:
    config: Path  # the bare config repo nebulad follows
    hello: Path  # the bare repo of the `hello` project
    url: str  # nebulad's TCP API

    def client(self, user: str) -> httpx.Client:
        with httpx.Client(base_url=self.url, timeout=30) as anonymous:
            answer = anonymous.post("/api/v1/auth/login", json={"user": user, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=60)

    def last_commit(self, repo: Path) -> str:
        return git(repo, "log", "-1", "--format=%an <%ae>|%s")


@pytest.fixture
def homelab(tmp_path: Path, docker_host: str) -> Iterator[Homelab]:
    """A config repo with the `site` project (a folder, with a symlink leading out of it and
    one to the repo's root) and the `hello` project (its own repo)."""
    hello_work = tmp_path / "hello"
    (hello_work / "www").mkdir(parents=True)
    (hello_work / "www" / "index.html").write_text("hello\n")
    git(hello_work, "init", "-q", "-b", "main")
    git(hello_work, "add", "-A")
    git(hello_work, "commit", "-qm", "hello")
    hello = tmp_path / "hello.git"
    git(tmp_path, "clone", "-q", "--bare", str(hello_work), str(hello))

    root = tmp_path / "homelab"
    site = root / "apps" / "site"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<h1>site</h1>\n")
    (site / "passwd").symlink_to("/etc/passwd")
    (site / "up").symlink_to("../..")
    (root / "nebula.yaml").write_text("defaults: {health_timeout: 60s}\n")
    (root / "projects").mkdir()
    (root / "projects" / "site.yaml").write_text(SITE)
    (root / "projects" / "hello.yaml").write_text(HELLO.format(url=hello))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    config = tmp_path / "homelab.git"
    git(tmp_path, "clone", "-q", "--bare", str(root), str(config))

    port = free_port()
    data = tmp_path / "d"
    args = ("--source", str(config), "--docker-host", docker_host, "--poll-interval", "3600s")
    with servers.nebulad(*args, "--tcp-listen", f"127.0.0.1:{port}", data=data):
        store = Store(f"sqlite:///{data / 'nebula.db'}")
        for user, role in (("ada", "operator"), ("vic", "viewer")):
            accounts.add_user(store, user, PASSWORD, role)
        store.close()
        lab = Homelab(config, hello, f"http://127.0.0.1:{port}")
        with lab.client("ada") as client:
            until(
                lambda: (
                    {p["name"] for p in client.get("/projects").json()["projects"]}
                    == {"hello", "site"}
                )
            )
        yield lab


def until(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "nebulad did not get there in time"
        time.sleep(0.2)


def test_projects_are_declared_changed_and_removed_by_commits_with_the_caller_as_author(
    homelab: Homelab,
) -> None:
    blog = {
        "name": "blog",
        "path": "apps/site",
        "port": 8080,
        "environments": {"production": {"expose": "blog.example.test"}},
    }
    with homelab.client("ada") as ada, homelab.client("vic") as vic:
        listed = {p["name"]: p for p in ada.get("/projects").json()["projects"]}
        assert listed["site"]["path"] == "apps/site"
        assert listed["hello"]["git_url"] == str(homelab.hello)
        assert listed["site"]["environments"][0]["host"] == "site.example.test"

        assert vic.post("/projects", json=blog).status_code == 403
        created = ada.post("/projects", json=blog)
        assert created.status_code == 201, created.text
        assert created.json()["files"] == ["projects/blog.yaml"]
        assert homelab.last_commit(homelab.config) == (
            "ada <user-ada@nebula.invalid>|Add project blog (user:ada)"
        )
        assert "blog.example.test" in git(homelab.config, "show", "HEAD:projects/blog.yaml")
        assert ada.post("/projects", json=blog).status_code == 409

        invalid = ada.post("/projects", json={**blog, "name": "bad", "port": "eighty"})
        assert invalid.status_code == 422, invalid.text
        problems = invalid.json()["problems"]
        assert problems and all(p["file"] == "projects/bad.yaml" for p in problems)
        assert [p for p in problems if p["field"].startswith("port")]
        assert "bad" not in git(homelab.config, "ls-tree", "--name-only", "HEAD", "projects/")

        until(lambda: ada.get("/projects/blog").status_code == 200)  # synced
        changed = ada.put("/projects/blog", json={**blog, "port": 9090})
        assert changed.status_code == 200, changed.text
        assert homelab.last_commit(homelab.config).endswith("|Update project blog (user:ada)")
        assert ada.put("/projects/nope", json={**blog, "name": "nope"}).status_code == 404

        removed = ada.delete("/projects/blog")
        assert removed.status_code == 200, removed.text
        assert homelab.last_commit(homelab.config) == (
            "ada <user-ada@nebula.invalid>|Remove project blog (user:ada)"
        )
        assert git(homelab.config, "ls-tree", "--name-only", "HEAD", "projects/") == (
            "projects/hello.yaml\nprojects/site.yaml"
        )
        until(lambda: ada.get("/projects/blog").status_code == 404)
        entries = ada.get("/audit", params={"actor": "user:ada"}).json()["entries"]
        actions = [e["action"] for e in entries]
        assert {"project.create", "project.update", "project.remove"} <= set(actions)


def test_a_folder_projects_files_are_read_and_written_through_commits(homelab: Homelab) -> None:
    with homelab.client("ada") as ada, homelab.client("vic") as vic:
        listing = vic.get("/projects/site/files").json()
        assert {(f["path"], f["kind"]) for f in listing["files"]} == {
            ("index.html", "file"),
            ("passwd", "symlink"),
            ("up", "symlink"),
        }
        read = vic.get("/projects/site/files/index.html").json()
        assert (read["content"], read["encoding"]) == ("<h1>site</h1>\n", "utf-8")

        body = {"content": "<h1>new</h1>\n"}
        assert vic.put("/projects/site/files/index.html", json=body).status_code == 403
        written = ada.put("/projects/site/files/index.html", json=body)
        assert written.status_code == 200, written.text
        sha = written.json()["commit"]
        assert git(homelab.config, "rev-parse", "HEAD") == sha
        assert homelab.last_commit(homelab.config) == (
            "ada <user-ada@nebula.invalid>|Edit index.html of project site"
        )
        assert git(homelab.config, "show", "--name-only", "--format=", sha) == (
            "apps/site/index.html"
        )
        assert git(homelab.config, "show", f"{sha}:apps/site/index.html") == "<h1>new</h1>"
        assert vic.get("/projects/site/files/index.html").json()["content"] == "<h1>new</h1>\n"

        nested = ada.put(
            "/projects/site/files/assets/logo.bin",
            json={"content": "AAEC/w==", "encoding": "base64", "message": "Add the logo"},
        )
        assert nested.status_code == 200, nested.text
        logo = vic.get("/projects/site/files/assets/logo.bin").json()
        assert (logo["encoding"], logo["content"], logo["size"]) == ("base64", "AAEC/w==", 4)
        assert homelab.last_commit(homelab.config).endswith("|Add the logo")


@pytest.mark.parametrize(
    ("method", "path", "match"),
    [
        ("GET", "%2E%2E/%2E%2E/nebula.yaml", "would leave the project"),
        ("PUT", "%2E%2E/%2E%2E/nebula.yaml", "would leave the project"),
        ("GET", "/etc/passwd", "an absolute path"),
        ("PUT", "/tmp/evil", "an absolute path"),
        ("GET", "passwd", "a symlink that leads outside the project"),
        ("GET", "up/nebula.yaml", "leads outside the project"),
        ("PUT", "up/nebula.yaml", "up is a symlink"),
        ("PUT", "passwd", "passwd is a symlink"),
        ("GET", "index%00.html", "NUL byte"),
        ("PUT", ".git/hooks/post-commit", "git's own files"),
    ],
)
def test_the_files_routes_refuse_what_leaves_the_project(
    homelab: Homelab, method: str, path: str, match: str
) -> None:
    before = git(homelab.config, "rev-parse", "HEAD")
    with homelab.client("ada") as ada:
        url = f"{homelab.url}/api/v1/projects/site/files/{path}"
        request = ada.build_request(method, url, json={"content": "x"} if method == "PUT" else None)
        request.url = httpx.URL(url.replace("files//", "files/%2F"))  # exactly as written
        answer = ada.send(request)
    assert answer.status_code == 400, answer.text
    assert match in answer.json()["error"]
    assert "root:" not in answer.text
    assert git(homelab.config, "rev-parse", "HEAD") == before


def test_a_git_projects_files_are_its_branchs_and_writes_are_pushed_there(
    homelab: Homelab, tmp_path: Path
) -> None:
    with homelab.client("ada") as ada:
        assert ada.get("/projects/hello/files/www/index.html").json()["content"] == "hello\n"
        written = ada.put("/projects/hello/files/www/index.html", json={"content": "hi\n"})
        assert written.status_code == 200, written.text
        assert homelab.last_commit(homelab.hello) == (
            "ada <user-ada@nebula.invalid>|Edit www/index.html of project hello"
        )
        assert git(homelab.hello, "show", "HEAD:www/index.html") == "hi"
        unchanged = ada.put("/projects/hello/files/www/index.html", json={"content": "hi\n"})
        assert unchanged.json()["commit"] is None

        # someone pushes to the project's repo: the files API reads the branch's new tip
        work = tmp_path / "someone"
        git(tmp_path, "clone", "-q", str(homelab.hello), str(work))
        (work / "www" / "index.html").write_text("from someone\n")
        git(work, "commit", "-qam", "someone's change")
        git(work, "push", "-q", "origin", "main")
        read = ada.get("/projects/hello/files/www/index.html").json()
        assert read["content"] == "from someone\n"
        assert read["commit"] == git(homelab.hello, "rev-parse", "HEAD")
        assert ada.get("/projects/hello/files", params={"environment": "nope"}).status_code == 404
        assert ada.get("/projects/nope/files").status_code == 404


# -- deployments and the IDE, through nebulad, a private dockerd and a real Caddy ---------------

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""
SAMPLE = """\
name: hello
git_url: {url}
drain: 1s
health: {{path: /, interval: 0.1s, timeout: 30s}}
environments:
  production:
    expose: hello.nebula.lan
"""
# code-server's catalog image, stood in for by an HTTP server of its health path, of the
# folder the IDE edits (/home/coder/workspace) and of the cookies it is sent (a CGI script)
IDE_STAND_IN = f"""\
FROM {servers.TEST_IMAGE}
RUN mkdir -p /srv/cgi-bin && echo ok > /srv/healthz && ln -s /home/coder/workspace /srv/workspace
RUN printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "$HTTP_COOKIE"\\n' \\
    > /srv/cgi-bin/cookies && chmod +x /srv/cgi-bin/cookies
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]
"""


@dataclass
class Deploying:
    lab: Homelab
    work: Path  # a clone of the project's repo
    caddy: servers.CaddyServer
    token: str  # ada's access token
    data: Path  # nebulad's data dir

    def serve(self, host: str, path: str = "/") -> str:
        context = ssl.create_default_context(cadata=self.caddy.internal_root())
        with httpx.Client(verify=context, timeout=10) as client:
            answer = client.get(
                f"https://127.0.0.1:{self.caddy.https_port}{path}",
                headers={"Host": host},
                extensions={"sni_hostname": host},
            )
        assert answer.status_code == 200, answer.text
        return answer.text

    def nebula(self, *args: str, code: int = 0) -> str:
        env = {"NEBULA_DAEMON": self.lab.url, "NEBULA_TOKEN": self.token, "COLUMNS": "200"}
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == code, result.stdout + result.stderr
        return result.stdout

    def live(self, client: httpx.Client, deployment: dict[str, Any]) -> dict[str, Any]:
        path = f"/projects/hello/deployments/{deployment['id']}"
        until(lambda: client.get(path).json()["status"] in ("live", "failed"), 180)
        found: dict[str, Any] = client.get(path).json()
        assert found["status"] == "live", found
        return found


@pytest.fixture
def deploying(
    tmp_path: Path,
    docker_host: str,
    test_image: str,
    caddy: servers.CaddyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deploying]:
    """nebulad with Caddy as its proxy, following a config repo with the `hello` project: a
    busybox HTTP server built FROM scratch, in a bare repo of its own."""
    caddy.reset()
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    engine.images.build(
        fileobj=io.BytesIO(IDE_STAND_IN.encode()), tag="codercom/code-server:4.93.1", rm=True
    )
    engine.close()
    work = tmp_path / "hello"
    (work / "www").mkdir(parents=True)
    (work / "www" / "index.html").write_text("version one\n")
    (work / "Dockerfile").write_text(DOCKERFILE)
    shutil.copy(servers._which("busybox", "busybox-static"), work / "busybox")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "first page")
    hello = tmp_path / "hello.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(hello))
    git(work, "remote", "add", "origin", str(hello))
    git(work, "fetch", "-q", "origin")

    root = tmp_path / "homelab"
    (root / "projects").mkdir(parents=True)
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    nebula_yaml = {"defaults": {"health_timeout": "60s"}, "proxy": proxy}
    (root / "nebula.yaml").write_text(json.dumps(nebula_yaml))
    (root / "projects" / "hello.yaml").write_text(SAMPLE.format(url=hello))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    config = tmp_path / "homelab.git"
    git(tmp_path, "clone", "-q", "--bare", str(root), str(config))

    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(tmp_path / "master.key"))
    port = free_port()
    data = tmp_path / "d"
    args = ("--source", str(config), "--docker-host", docker_host, "--poll-interval", "3600s")
    with servers.nebulad(*args, "--tcp-listen", f"127.0.0.1:{port}", "--ui", data=data):
        store = Store(f"sqlite:///{data / 'nebula.db'}")
        for user, role in (("ada", "operator"), ("vic", "viewer")):
            accounts.add_user(store, user, PASSWORD, role)
        store.close()
        lab = Homelab(config, hello, f"http://127.0.0.1:{port}")
        with httpx.Client(base_url=lab.url, timeout=30) as anonymous:
            login = {"user": "ada", "password": PASSWORD}
            token = anonymous.post("/api/v1/auth/login", json=login).json()["access_token"]
        yield Deploying(lab, work, caddy, token, data)


def test_deploy_logs_and_rollback_through_the_api_and_the_cli(deploying: Deploying) -> None:
    lab = deploying.lab
    with lab.client("ada") as ada:
        until(lambda: ada.get("/projects/hello/deployments").json()["deployments"], 60)
        [first] = ada.get("/projects/hello/deployments").json()["deployments"]
        first = deploying.live(ada, first)  # the first sync deployed the branch's head
        assert deploying.serve("hello.nebula.lan") == "version one\n"

        # an edit through the files API is a commit of ada's in the project's repo; deploy it
        edit = ada.put("/projects/hello/files/www/index.html", json={"content": "version two\n"})
        second_commit = edit.json()["commit"]
        started = ada.post("/projects/hello/deploy", json={"environment": "production"})
        assert started.status_code == 202, started.text
        assert started.json()["status"] == "pending"
        second = deploying.live(ada, started.json())
        assert second["commit"] == second_commit
        assert "#" in second["logs"]  # BuildKit's progress, kept with the deployment
        assert deploying.serve("hello.nebula.lan") == "version two\n"
        assert ada.post("/projects/hello/deploy", json={"environment": "nope"}).status_code == 404

    listed = json.loads(deploying.nebula("projects", "list", "--output", "json"))
    [hello] = listed
    assert hello["environments"][0]["latest"]["commit"] == second_commit
    shown = deploying.nebula("projects", "show", "hello")
    assert "hello.nebula.lan" in shown and second_commit[:12] in shown
    assert "#" in deploying.nebula("projects", "logs", "hello")

    rolled = json.loads(
        deploying.nebula(
            "projects", "rollback", "hello", "--to", first["commit"][:12], "-o", "json"
        )
    )
    assert (rolled["status"], rolled["commit"], rolled["logs"]) == ("live", first["commit"], "")
    assert deploying.serve("hello.nebula.lan") == "version one\n"
    assert "rollback" in deploying.nebula("projects", "show", "hello")
    refused = deploying.nebula("projects", "rollback", "hello", "--to", "0" * 12, code=1)
    assert refused == ""  # the reason is on stderr


def test_open_installs_the_ide_on_a_working_copy_behind_the_dashboards_login(
    deploying: Deploying,
) -> None:
    port = free_port()
    out = deploying.nebula("projects", "open", "hello", "--port", str(port))
    assert "https://ide.hello.nebula.lan" in out
    assert "nebula secrets get ide-hello.password --reveal" in out
    installed = git(deploying.lab.config, "show", "HEAD:packages/ide-hello.yaml")
    assert "package: code-server" in installed and "host: ide.hello.nebula.lan" in installed
    assert "auth: nebula" in installed
    assert "${secret:ide-hello.password}" in installed
    assert git(deploying.lab.config, "log", "-1", "--format=%s").startswith("Install ide-hello")

    ide = f"https://ide.hello.nebula.lan:{deploying.caddy.https_port}"
    page = f"{ide}/workspace/www/index.html"
    with Browser(deploying.caddy) as anonymous:
        # without a session, the IDE's hostname sends the browser to the login, on that host
        until(lambda: anonymous.reaches(page, "/ui/login"), 120)
        answer = anonymous.get(page)
        assert answer.status_code == 200
        assert str(answer.url) == f"{ide}/ui/login?next=/workspace/www/index.html"
        assert 'hx-post="/api/v1/auth/login"' in answer.text
        assert anonymous.get(f"{ide}/ui/static/nebula.js").status_code == 200
        assert "version one" not in answer.text
        # a route without `auth:` is unchanged: served to anyone
        assert anonymous.get(f"https://hello.nebula.lan:{deploying.caddy.https_port}/").text == (
            "version one\n"
        )

    # the operator logs in on the IDE's hostname and is sent back to the IDE (the stand-in
    # serves the project's working copy)
    with Browser(deploying.caddy) as ada:
        ada.log_in(ide, "ada")
        answer = ada.get(page)
        assert (answer.status_code, answer.text) == (200, "version one\n")
        assert answer.url.path == "/workspace/www/index.html"
        # the IDE gets the browser's other cookies, never the session (an access token)
        assert "nebula_session" in ada.cookies
        ada.cookies.set("theme", "dark", domain="ide.hello.nebula.lan")
        assert ada.get(f"{ide}/cgi-bin/cookies").text.strip() == "theme=dark"

    again = json.loads(deploying.nebula("projects", "open", "hello", "-o", "json"))
    assert again["commit"] is None  # installed already: nothing committed
    assert Path(again["workspace"], ".git").is_dir()  # commits and pushes from the IDE work


def test_the_ides_login_refuses_viewers_bad_cookies_and_other_origins(
    deploying: Deploying,
) -> None:
    deploying.nebula("projects", "open", "hello", "--port", str(free_port()))
    ide = f"https://ide.hello.nebula.lan:{deploying.caddy.https_port}"
    page = f"{ide}/workspace/www/index.html"
    with Browser(deploying.caddy) as ada:
        until(lambda: ada.reaches(page, "/ui/login"), 120)
        ada.log_in(ide, "ada")
        # a change, or a websocket, from another hostname of the same site is refused; from
        # the IDE's own pages it goes through (the stand-in's answer, not nebulad's refusal)
        evil = {"Origin": "https://evil.nebula.lan"}
        refused = ada.post(page, headers=evil, content=b"x")
        assert refused.status_code == 403 and "hostname's pages" in refused.text
        upgrade = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        assert ada.get(page, headers={**upgrade, **evil}).status_code == 403
        same = ada.get(page, headers={**upgrade, "Origin": ide})
        assert (same.status_code, same.text) == (200, "version one\n")
        posted = ada.post(page, headers={"Origin": ide}, content=b"x")
        assert "hostname's pages" not in posted.text and posted.status_code != 401

    # a viewer is refused; a forged or expired session cookie is sent to log in again (ada's
    # own, set the same way, passes)
    with Browser(deploying.caddy) as vic:
        vic.log_in(ide, "vic")
        refused = vic.get(page)
        assert refused.status_code == 403 and "operator role" in refused.text
    store = Store(f"sqlite:///{deploying.data / 'nebula.db'}")
    user = login_user(store, "ada")
    store.close()
    assert user is not None
    long_ago = datetime.now(UTC) - ACCESS_TTL - timedelta(minutes=1)
    key = load_signing_key(deploying.data)
    expired, _ = issue_access_token(key, "ada", user.id, "operator", long_ago)
    forged, _ = issue_access_token(b"k" * 32, "ada", user.id, "operator", datetime.now(UTC))
    tampered = deploying.token[:-4] + "AAAA"
    for cookie, good in (
        (deploying.token, True),
        (expired, False),
        (forged, False),
        (tampered, False),
    ):
        with Browser(deploying.caddy) as browser:
            browser.cookies.set("nebula_session", cookie, domain="ide.hello.nebula.lan")
            answer = browser.get(page)
            assert (answer.url.path, "version one" in answer.text) == (
                ("/workspace/www/index.html", True) if good else ("/ui/login", False)
            )


class Browser(httpx.Client):
    """An HTTPS client of Caddy that keeps cookies and follows redirects, reaching every
    hostname at Caddy's loopback listener (with the hostname as SNI and Host)."""

    def __init__(self, caddy: servers.CaddyServer) -> None:
        context = ssl.create_default_context(cadata=caddy.internal_root())
        super().__init__(transport=_Loopback(verify=context), follow_redirects=True, timeout=30)

    def reaches(self, url: str, path: str) -> bool:
        """Whether `url` answers, in the end, at `path` (false while Caddy has no route)."""
        try:
            return self.get(url).url.path == path
        except httpx.HTTPError:
            return False

    def log_in(self, site: str, user: str) -> None:
        """Log in on `site` as its login page's form does (a JSON post asking for cookies)."""
        login = {"user": user, "password": PASSWORD, "cookie": True}
        answer = self.post(f"{site}/api/v1/auth/login", json=login)
        assert answer.status_code == 200, answer.text


class _Loopback(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": request.url.host},
        )
        return super().handle_request(sent)


def test_open_is_refused_without_a_dashboard_to_log_in_with(homelab: Homelab) -> None:
    """The IDE is only ever exposed behind the dashboard's login: a nebulad serving no
    dashboard (no --ui) installs nothing and says what to enable."""
    with homelab.client("ada") as ada:
        before = homelab.last_commit(homelab.config)
        refused = ada.post("/projects/hello/open", json={})
        assert refused.status_code == 400
        assert "--ui" in refused.json()["error"]
        assert homelab.last_commit(homelab.config) == before
