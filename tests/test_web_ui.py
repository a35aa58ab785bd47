"""The web dashboard in a real headless Chromium, against a real nebulad on a real Docker Engine:
logging in and out, a catalog package installed until healthy, what a viewer may see and do,
and the CSRF token a browser session's changes need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from test_daemon_api import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.docker

PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.test",
}
# A web server that serves its greeting, healthy once it answers.
HELLO = """\
name: hello
version: "1"
description: a greeting over HTTP
category: web
compose:
  services:
    web:
      image: nebula-test/hello:1
      init: true
      command: ["sh", "-c", "mkdir -p /www && echo $$GREETING > /www/index.html && echo greeting set to $$GREETING && httpd -f -p 80 -h /www"]
      environment:
        GREETING: ${GREETING}
      healthcheck:
        test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
        interval: 1s
        retries: 30
variables:
  - name: GREETING
    description: what the page says
    required: true
"""


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        servers.unavailable("chromium not found; install it with: apt-get install chromium")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        servers.unavailable("playwright not installed; pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def dashboard(tmp_path: Path, docker_host: str, test_image: str) -> Iterator[str]:
    """nebulad with the dashboard on loopback TCP, following a repo whose catalog has `hello`;
    users ada (operator) and vic (viewer). Yields the dashboard's base URL."""
    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    engine.images.get(test_image).tag("nebula-test/hello:1")
    root = tmp_path / "homelab"
    (root / "catalog" / "hello").mkdir(parents=True)
    (root / "catalog" / "hello" / "1.yaml").write_text(HELLO)
    (root / "nebula.yaml").write_text("defaults: {health_timeout: 60s}\n")
    (root / "packages").mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    bare = tmp_path / "homelab.git"
    git(tmp_path, "clone", "-q", "--bare", str(root), str(bare))
    port = free_port()
    data = tmp_path / "d"
    args = ("--source", str(bare), "--docker-host", docker_host, "--poll-interval", "3600s")
    with servers.nebulad(*args, "--tcp-listen", f"127.0.0.1:{port}", "--ui", data=data):
        for user, role in (("ada", "operator"), ("vic", "viewer")):
            add_user(data / "nebula.db", user, role)
        yield f"http://127.0.0.1:{port}"


def test_an_operator_logs_in_installs_a_package_sees_it_healthy_and_logs_out(
    browser: Browser, dashboard: str
) -> None:
    page = browser.new_page()
    page.goto(f"{dashboard}/ui/installations")
    assert page.url == f"{dashboard}/ui/login?next=/ui/installations"  # no session yet
    log_in(page, "ada")
    page.wait_for_url(f"{dashboard}/ui/installations")
    assert page.locator("#installations tbody").inner_text().strip() == "Nothing installed yet."

    page.get_by_role("link", name="Overview").click()
    assert page.locator("#state").inner_text() == "following"
    assert page.get_by_role("button", name="Sync now").is_visible()

    page.get_by_role("link", name="Catalog").click()
    page.get_by_label("Search").fill("hello")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="hello").click()
    page.get_by_role("button", name="Install hello").click()  # GREETING is required
    assert page.url == f"{dashboard}/ui/catalog/hello"
    page.get_by_label("GREETING (required)").fill("hi there")
    page.get_by_role("button", name="Install hello").click()
    page.wait_for_url(f"{dashboard}/ui/installations")

    # The page is not reloaded: the sync's events bring the row, then its health.
    row = page.locator('tr[data-installation="hello"]')
    row.get_by_text("hello-web: running (healthy)").wait_for(timeout=90_000)
    assert "hello 1" in row.inner_text()

    row.get_by_role("link", name="Logs of hello").click()
    page.wait_for_url(f"{dashboard}/ui/installations/hello/logs")
    assert "greeting set to hi there" in page.locator("#logs").inner_text()

    page.get_by_role("link", name="Audit log").click()
    install = page.locator("#audit tr", has_text="marketplace.install")
    assert "user:ada" in install.inner_text()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{dashboard}/ui/login")
    page.goto(f"{dashboard}/ui/")
    assert page.url.startswith(f"{dashboard}/ui/login")  # the session is gone
    page.wait_for_load_state("networkidle")  # the login page's renewal attempt, refused
    assert page.url.startswith(f"{dashboard}/ui/login")
    page.close()


def test_a_viewer_sees_no_controls_and_the_api_refuses_its_changes(
    browser: Browser, dashboard: str
) -> None:
    page = browser.new_page()
    page.goto(f"{dashboard}/ui/")
    log_in(page, "vic")
    page.wait_for_url(f"{dashboard}/ui/")
    assert "vic (viewer)" in page.locator("header").inner_text()
    assert page.locator("#state").inner_text() == "following"
    for path in ("/ui/", "/ui/installations", "/ui/syncs", "/ui/catalog/hello"):
        page.goto(dashboard + path)
        buttons = page.get_by_role("button").all_inner_texts()
        assert buttons == ["Log out"], (path, buttons)
        assert page.locator("form#install").count() == 0
    assert "GREETING" not in page.content()  # the install form's fields are not there either

    # Its session with the page's own CSRF token, straight at the API: refused for its role.
    install = {"package": "hello", "values": {"GREETING": "x"}}
    answer = fetch(page, "/api/v1/marketplace/install", install, csrf=True)
    assert answer["status"] == 403
    assert "vic is a viewer; this needs the operator role" in answer["error"]
    assert fetch(page, "/api/v1/sync", {}, csrf=True)["status"] == 403
    page.close()


def test_a_change_without_the_session_csrf_token_is_refused(
    browser: Browser, dashboard: str
) -> None:
    page = browser.new_page()
    page.goto(f"{dashboard}/ui/")
    log_in(page, "ada")
    page.wait_for_url(f"{dashboard}/ui/")
    refused = fetch(page, "/api/v1/suspend", {}, csrf=False)
    assert refused["status"] == 403
    assert "missing or wrong X-Nebula-CSRF header" in refused["error"]
    wrong = fetch(page, "/api/v1/suspend", {}, csrf=False, headers={"X-Nebula-CSRF": "0" * 64})
    assert wrong["status"] == 403
    page.reload()
    assert page.locator("#state").inner_text() == "following"  # neither was carried out

    # The page's own button sends the token.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Suspend").click()
    page.get_by_role("status").get_by_text("Suspended.").wait_for()
    page.locator("#state", has_text="suspended").wait_for()  # live, from the event stream
    page.close()


def log_in(page: Page, user: str) -> None:
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def fetch(
    page: Page,
    path: str,
    body: dict[str, Any],
    *,
    csrf: bool,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST `body` from the page's own script, as a script injected into it could: its session
    cookie goes along; the CSRF token only when `csrf` (read from the page, as htmx sends it)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if csrf:
        sent |= json.loads(page.get_attribute("body", "hx-headers") or "{}")
    result: dict[str, Any] = page.evaluate(
        """async ([path, body, headers]) => {
            const answer = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
            return {status: answer.status, error: (await answer.json()).error || ""};
        }""",
        [path, body, sent],
    )
    return result


def add_user(database: Path, name: str, role: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--database-url",
            f"sqlite:///{database}",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output


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
