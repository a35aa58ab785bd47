"""`nebula tui` driven by Textual's Pilot against a real nebulad (a process, over its unix
socket) on the real Docker Engine: what a person at the keyboard sees change as the daemon works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import docker
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

import servers
from llm_servers import MODEL, LlmServer
from nebula.cli.client import DaemonClient
from nebula.tui.app import NebulaApp
from nebula.tui.screens import Details, InstallationDetails, PackageDetails
from nebula.tui.tail import LogTail
from nebula.tui.views import Clock
from ollama_double import ollama_double
from test_daemon import IMAGE, Repo, running
from test_daemon import app as app_yaml
from test_nebulad import nebulad  # noqa: F401  (the fixture)

Lab = tuple[Repo, Path, str, docker.DockerClient]


@pytest.fixture(autouse=True)
def fixed_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same commits each run (dates fixed), so snapshots show the same shas."""
    for name in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.setenv(name, "2026-01-01T12:00:00+00:00")


def tui(socket_path: Path) -> NebulaApp:
    return NebulaApp(lambda: DaemonClient(socket_path), clock=Clock(frozen=True), retry=0.2)


async def until(pilot: Pilot[None], check: Callable[[], bool], what: str) -> None:
    """Let the app run until `check` holds (the daemon works at its own pace)."""
    for _ in range(1200):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"the TUI never showed {what}")


def cell(app: NebulaApp, panel: str, key: str, column: str) -> str | None:
    table = app.table(panel)
    try:
        return table.cell(key, column)
    except KeyError:
        return None


def drive(app: NebulaApp, scenario: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.connected, "the connection")
            await scenario(pilot)

    asyncio.run(run())


def test_a_new_installation_shows_after_its_sync(nebulad: Lab) -> None:  # noqa: F811
    repo, socket_path, _, engine = nebulad
    app = tui(socket_path)

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("2")
        assert cell(app, "installations", "web", "containers") == "1/1 running"
        assert cell(app, "installations", "notes", "name") is None
        repo.push("add notes", {"packages/notes.yaml": app_yaml("notes")})
        with DaemonClient(socket_path) as client:
            client.request_sync("hook")
        await until(
            pilot,
            lambda: cell(app, "installations", "notes", "containers") == "1/1 running",
            "notes running",
        )
        assert "notes-notes" in running(engine)

    drive(app, scenario)


def test_a_held_sync_is_approved_from_the_approvals_screen_and_applied(
    nebulad: Lab,  # noqa: F811
) -> None:
    repo, socket_path, _, engine = nebulad
    app = tui(socket_path)

    async def scenario(pilot: Pilot[None]) -> None:
        sha = repo.push("remove everything", {"packages/web.yaml": None})
        with DaemonClient(socket_path) as client:
            client.request_sync("hook")
        await pilot.press("4")
        await until(pilot, lambda: app.table("approvals").row_count == 1, "the held sync")
        what = app.table("approvals").cell(app.table("approvals").selected() or "", "what")
        assert what == f"sync of {sha[:8]}: 2 delete"  # web's container and its network
        assert "held" in str(app.query_one("#overview-body").render())
        assert running(engine) == {"web-web"}  # held: nothing removed yet

        await pilot.press("y")  # approve: asks first
        await pilot.press("n")  # no: nothing sent
        assert app.table("approvals").row_count == 1
        await pilot.press("y", "y")
        await until(pilot, lambda: app.table("installations").row_count == 0, "web removed")
        await until(pilot, lambda: app.table("approvals").row_count == 0, "no approval left")
        assert running(engine) == set()

    drive(app, scenario)


def test_an_agents_tool_call_is_approved_from_the_approvals_screen(
    nebulad: Lab,  # noqa: F811
    llm_server: LlmServer,
) -> None:
    repo, socket_path, _, _ = nebulad
    app = tui(socket_path)
    with ollama_double(llm_server.url, {MODEL: MODEL}) as ollama:
        for folder in ("functions", "agents"):
            (repo.work / folder).mkdir()
        repo.push(
            "an agent that syncs",
            {
                "nebula.yaml": "defaults: {health_timeout: 30s}\n"
                f'ai:\n  ollama: {{host: "{ollama.url}"}}\n',
                "functions/apply.yaml": "name: apply\ndescription: Run a sync now\n"
                "implementation: apply\nimplementation_type: code\n",
                "agents/fixer.yaml": "name: fixer\nsystemPrompt: You keep the homelab synced.\n"
                f"model: ollama:{MODEL}\ntemperature: 0\ntools: [apply]\nmaxTurns: 2\n"
                "context: {maxTokens: 32}\n",
            },
        )
        client = DaemonClient(socket_path)

        async def scenario(pilot: Pilot[None]) -> None:
            client.request_sync("hook")
            await until(pilot, lambda: bool(client.agents()), "the agent loaded")
            execution = client.execute_agent("fixer", "Sync now.")
            await pilot.press("4")
            key = f"agent:{execution}"
            await until(
                pilot, lambda: cell(app, "approvals", key, "what") is not None, "the call waiting"
            )
            assert cell(app, "approvals", key, "what") == "agent fixer: apply()"
            await pilot.press("y", "y")  # approve, asked first
            await until(
                pilot,
                lambda: (
                    client.agent_execution(execution)["status"] != "waiting_approval"
                    or len(client.agent_execution(execution)["steps"]) > 2
                ),
                "the run going on",
            )
            steps = client.agent_execution(execution)["steps"]
            assert [s["detail"]["name"] for s in steps if s["kind"] == "tool_call"][:1] == ["apply"]

        try:
            drive(app, scenario)
        finally:
            client.close()


def test_a_killed_container_shows_as_drift_then_running_again(nebulad: Lab) -> None:  # noqa: F811
    _, socket_path, _, engine = nebulad
    app = tui(socket_path)

    def details() -> str:
        return app.screen.text.plain if isinstance(app.screen, Details) else ""

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("2", "enter")
        assert details().startswith("web")
        engine.containers.get("web-web").kill()
        await until(pilot, lambda: "drift (sync" in details(), "the drift repair of web")
        await until(
            pilot,
            lambda: cell(app, "installations", "web", "containers") == "1/1 running",
            "web running again",
        )
        assert "web-web  running" in details()

    drive(app, scenario)


def test_an_installation_shows_what_the_next_sync_would_change_of_it(
    nebulad: Lab,  # noqa: F811
) -> None:
    _, socket_path, _, engine = nebulad
    app = tui(socket_path)

    def shown() -> str:
        return app.screen.text.plain if isinstance(app.screen, Details) else ""

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("2", "enter", "p")
        await until(pilot, lambda: "nothing: it runs as the repo says" in shown(), "no change")
        await pilot.press("escape")
        with DaemonClient(socket_path) as client:
            client.suspend()  # nothing repairs what is about to go
        engine.containers.get("web-web").remove(force=True)
        await pilot.press("p")
        await until(pilot, lambda: "+ create container web-web" in shown(), "the change")
        assert not engine.containers.list(all=True, filters={"name": "web-web"})  # not applied

    drive(app, scenario)


def test_an_installation_tails_its_logs_and_restarts_after_a_confirmation(
    nebulad: Lab,  # noqa: F811
) -> None:
    _, socket_path, _, engine = nebulad
    app = tui(socket_path)

    def tail() -> list[str]:
        if not isinstance(app.screen, InstallationDetails):
            return []
        return [strip.text.rstrip() for strip in app.screen.query_one(LogTail).lines]

    def say(line: str) -> None:
        """A line on the container's output, as its own process would write it."""
        container = engine.containers.get("web-web")
        container.exec_run(["sh", "-c", f"echo {line} > /proc/1/fd/1"])

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("2", "enter")
        say("written-after-the-screen-opened")
        await until(pilot, lambda: "web | written-after-the-screen-opened" in tail(), "the line")
        say("and-another")
        await until(pilot, lambda: tail()[-1:] == ["web | and-another"], "the next line")

        started = engine.containers.get("web-web").attrs["State"]["StartedAt"]
        await pilot.press("r", "n")  # asked first; no: nothing restarted
        await pilot.pause(0.5)
        assert engine.containers.get("web-web").attrs["State"]["StartedAt"] == started
        await pilot.press("r", "y")
        await until(
            pilot,
            lambda: engine.containers.get("web-web").attrs["State"]["StartedAt"] != started,
            "web restarted",
        )
        say("after-the-restart")  # the tail follows the container started again
        await until(pilot, lambda: tail()[-1:] == ["web | after-the-restart"], "a later line")

        await pilot.press("escape", "6")  # the audit log: the restart, by whom
        audit = app.table("audit")
        await until(pilot, lambda: audit.row_count > 0, "the audit log")
        entries = [(audit.cell(str(k.value), "action"), audit.cell(str(k.value), "target"))
                   for k in audit.rows]  # fmt: skip
        assert ("installation.restart", "web") in entries
        await pilot.press("slash", *"someone-else", "enter")  # filtered by actor: none of theirs
        await until(pilot, lambda: audit.row_count == 0, "no entries of someone-else")

    drive(app, scenario)


def test_a_catalog_package_is_found_and_installed_with_its_variables(
    nebulad: Lab,  # noqa: F811
) -> None:
    repo, socket_path, _, _ = nebulad
    app = tui(socket_path)

    def committed() -> str:
        return repo.git("--git-dir", str(repo.bare), "log", "-1", "--format=%s", "main")

    async def scenario(pilot: Pilot[None]) -> None:
        first = committed()
        await pilot.press("7", "slash", *"filebrowser", "enter")
        await until(pilot, lambda: app.table("catalog").row_count == 1, "the search's one match")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PackageDetails), "the package")
        await pilot.click("#install-name")
        await pilot.press(*"files")
        port = app.screen.query_one("#var-PORT", Input)
        port.value = "8099"
        await pilot.press("ctrl+s", "n")  # asked first; no: nothing committed
        assert committed() == first
        await pilot.press("ctrl+s", "y")
        await until(pilot, lambda: not isinstance(app.screen, PackageDetails), "the catalog")
        assert committed() != first
        added = repo.git("--git-dir", str(repo.bare), "show", "main:packages/files.yaml")
        assert "filebrowser" in added and "8099" in added

    drive(app, scenario)


SCREENS = {
    "overview": "1", "installations": "2", "syncs": "3", "approvals": "4", "incidents": "5",
    "audit": "6", "catalog": "7",
}  # fmt: skip


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_each_screen_renders_at_both_sizes(
    nebulad: Lab,  # noqa: F811
    snap_compare: Callable[..., bool],
    screen: str,
    size: tuple[int, int],
) -> None:
    _, socket_path, _, _ = nebulad
    app = tui(socket_path)

    def audited() -> bool:  # the first sync's entry, the one the audit screen shows
        with DaemonClient(socket_path) as client:
            return bool(client.audit())

    async def loaded(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.connected and bool(app.syncs), "the daemon's state")
        await until(pilot, audited, "the first sync audited")
        await pilot.press(SCREENS[screen])
        if screen in ("audit", "catalog"):  # read when shown
            await until(pilot, lambda: app.table(screen).row_count > 0, f"the {screen}")

    assert snap_compare(app, terminal_size=size, run_before=loaded)


def test_without_a_daemon_a_banner_says_so_and_it_keeps_trying(tmp_path: Path) -> None:
    app = tui(tmp_path / "nebulad.sock")
    tries: list[str] = []

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            banner = app.query_one("#banner")

            def shown() -> bool:
                text = str(banner.render())
                if banner.has_class("shown") and text not in tries[-1:]:
                    tries.append(text)
                return len(tries) >= 1 and app.feed.attempts >= 2

            await until(pilot, shown, "the disconnected banner, twice tried")
            assert not app.connected

    asyncio.run(run())
    assert "no nebulad is running" in tries[0]
    assert "nebulad.sock" in tries[0]


def test_it_reconnects_by_itself_when_nebulad_restarts(
    tmp_path: Path, docker_host: str, test_image: str
) -> None:
    root, data = tmp_path / "homelab", tmp_path / "d"
    (root / "packages").mkdir(parents=True)
    data.mkdir(mode=0o700)
    (root / "nebula.yaml").write_text("defaults: {health_timeout: 30s}\n")
    (root / "packages" / "web.yaml").write_text(app_yaml("web").replace(IMAGE, test_image))
    args = ("--source", str(root), "--watch", "--docker-host", docker_host, "--poll-interval", "1h")
    app = tui(data / "nebulad.sock")

    def shown(name: str) -> bool:
        return cell(app, "installations", name, "containers") == "1/1 running"

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            with servers.nebulad(*args, data=data):
                await until(pilot, lambda: app.connected and shown("web"), "web running")
            banner = app.query_one("#banner")
            await until(pilot, lambda: banner.has_class("shown"), "the disconnected banner")
            assert not app.connected
            # While it is away, the repo gains an installation: the daemon applies it when it
            # starts again, and the TUI shows it with no key pressed.
            notes = app_yaml("notes").replace(IMAGE, test_image)
            (root / "packages" / "notes.yaml").write_text(notes)
            with servers.nebulad(*args, data=data):
                await until(pilot, lambda: not banner.has_class("shown"), "the banner cleared")
                await until(pilot, lambda: shown("notes") and shown("web"), "notes running")

    engine = docker.DockerClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:
        asyncio.run(run())
    finally:
        for container in engine.containers.list(
            all=True, filters={"label": "io.nebula.managed=true"}
        ):
            container.remove(force=True)
        for network in engine.networks.list(filters={"label": "io.nebula.managed=true"}):
            network.remove()
        engine.close()
