"""The dashboard: a Textual app that shows what `Feed` reads and streams, and sends changes.

Every screen is mounted once and kept in step as items arrive (tables row by row); a key in the
footer switches between them. Changes (approve, reject, acknowledge, resolve) are asked for
with a confirmation and sent on a worker thread; their effect arrives by the event stream.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Static

from nebula.cli.client import DaemonClient
from nebula.errors import NebulaError
from nebula.tui import views
from nebula.tui.feed import Connected, Feed, FeedItem, Loaded, Lost, Streamed
from nebula.tui.keys import KeyBar
from nebula.tui.panels import (
    Approvals,
    Ask,
    Audit,
    Catalog,
    Incidents,
    Installations,
    Overview,
    Rows,
    Searched,
    Syncs,
)
from nebula.tui.screens import Confirm, Details, InstallationDetails, PackageDetails
from nebula.tui.views import Clock

PANELS = ("overview", "installations", "syncs", "approvals", "incidents", "audit", "catalog")
HISTORY = 20  # events kept per installation, shown in its details
PROGRESS = 8  # lines of the running sync's progress shown


class Fed(Message):
    def __init__(self, item: FeedItem) -> None:
        super().__init__()
        self.item = item


class NebulaApp(App[None]):
    TITLE = "nebula"
    CSS = """
    #banner { dock: top; height: 1; background: $error; color: $text; display: none; }
    #banner.shown { display: block; }
    ContentSwitcher, ContentSwitcher > * { height: 1fr; }
    Rows { height: 1fr; }
    #sync-detail { height: auto; max-height: 9; border-top: solid $primary; }
    """
    BINDINGS = [
        Binding("1", "show('overview')", "Overview"),
        Binding("2", "show('installations')", "Installs"),
        Binding("3", "show('syncs')", "Syncs"),
        Binding("4", "show('approvals')", "Approvals"),
        Binding("5", "show('incidents')", "Incidents"),
        Binding("6", "show('audit')", "Audit"),
        Binding("7", "show('catalog')", "Catalog"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, connect: Callable[[], DaemonClient], *, clock: Clock | None = None, retry: float = 2.0
    ) -> None:
        super().__init__()
        self.connect = connect
        self.clock = clock or Clock()
        self.feed = Feed(connect, lambda item: self.post_message(Fed(item)), retry)
        self.connected = False
        self.status: dict[str, Any] = {}
        self.installations: dict[str, dict[str, Any]] = {}
        self.syncs: list[dict[str, Any]] = []
        self.executions: list[dict[str, Any]] = []  # runbook runs waiting on a step
        self.agents_waiting: list[dict[str, Any]] = []  # agent runs waiting on a tool call
        self.incidents: list[dict[str, Any]] = []
        self.history: dict[str, deque[str]] = {}
        self.running: dict[str, Any] | None = None  # the sync going on: id, trigger, progress

    def compose(self) -> ComposeResult:
        yield Static("", id="banner")
        with ContentSwitcher(initial="overview"):
            yield Overview(id="overview")
            yield Installations(id="installations")
            yield Syncs(id="syncs")
            yield Approvals(id="approvals")
            yield Incidents(id="incidents")
            yield Audit(id="audit")
            yield Catalog(id="catalog")
        yield KeyBar()

    def on_mount(self) -> None:
        # What exists now (the interpreter's, Textual's and rich's modules, the widgets) lives
        # as long as the app: kept out of the collector's full passes, which otherwise stall
        # about one frame in 20 by 50 ms or more once 500 installations are shown
        # (bench/tui.py). What the daemon sends later is collected as usual.
        gc.freeze()
        self.feed.start()

    def on_unmount(self) -> None:
        self.feed.stop()

    def action_show(self, panel: str) -> None:
        self._home.query_one(ContentSwitcher).current = panel
        shown = self._home.query_one(f"#{panel}")
        tables = shown.query(Rows)
        if tables:
            tables.first().focus()
        if isinstance(shown, Searched):
            self._search(shown)

    @property
    def _home(self) -> Screen[object]:
        """The dashboard's screen, whichever screen is shown over it (details, a question)."""
        return self.screen_stack[0]

    def table(self, panel: str) -> Rows:
        return self._home.query_one(f"#{panel}").query_one(Rows)

    # -- what the feed brings ------------------------------------------------------------------

    def on_fed(self, message: Fed) -> None:
        if not self.is_running or not self.screen_stack:
            return  # closing
        item = message.item
        if isinstance(item, Loaded):
            self._loaded(item.what, item.value)
        elif isinstance(item, Streamed):
            self._streamed(item.kind, item.data)
        elif isinstance(item, Connected):
            self.connected = True
            self._home.query_one("#banner", Static).remove_class("shown")
        elif isinstance(item, Lost):
            self.connected = False
            self.running = None
            banner = self._home.query_one("#banner", Static)
            banner.update(f" disconnected, retrying: {item.reason}")
            banner.add_class("shown")

    def _loaded(self, what: str, value: Any) -> None:
        if what == "status":
            self.status = value
        elif what == "installations":
            self.installations = {i["name"]: i for i in value}
            self.table("installations").show(
                {n: views.installation_row(i) for n, i in self.installations.items()}
            )
            self._redraw_details()
        elif what == "syncs":
            self.syncs = value
            self.table("syncs").show({str(s["id"]): views.sync_row(s, self.clock) for s in value})
            self._sync_detail()
            self._approvals()
        elif what == "executions":
            self.executions = value
            self._approvals()
        elif what == "agents":
            self.agents_waiting = value
            self._approvals()
        elif what == "incidents":
            self.incidents = value
            rows = {str(i["id"]): views.incident_row(i, self.clock) for i in value}
            self.table("incidents").show(rows)
        self._home.query_one(Overview).show(self.status, self.installations, self.syncs, self.clock)

    def _streamed(self, kind: str, data: dict[str, Any]) -> None:
        installations = self.table("installations")
        if kind == "sync_started":
            self.running = {"id": data.get("id"), "trigger": data.get("trigger"), "progress": []}
        elif kind == "sync_finished":
            self.running = None
        elif kind == "progress" and self.running is not None:
            name, line = str(data.get("installation")), str(data.get("message"))
            self.running["progress"] = [*self.running["progress"], f"{name}: {line}"][-PROGRESS:]
            trigger = self.running.get("trigger")
            status = "drift" if trigger == "drift" else "syncing"
            installations.set(name, "status", status)
            self._remember(name, f"{status} (sync {self.running.get('id')}): {line}")
        elif kind == "health":
            name = str(data.get("installation"))
            found = self.installations.get(name)
            if found is not None:
                checks = [c for c in found.get("health") or [] if c.get("check") != data["check"]]
                checks.append({"check": data.get("check"), "status": data.get("status"),
                               "detail": data.get("detail")})  # fmt: skip
                found["health"] = checks
                installations.set(name, "health", views.health(checks))
            self._remember(name, f"health {data.get('check')}: {data.get('status')}")
        self._sync_detail()

    def _remember(self, name: str, line: str) -> None:
        at = self.clock.time(datetime.now(UTC).isoformat())
        self.history.setdefault(name, deque(maxlen=HISTORY)).append(f"{at}  {line}")
        self._redraw_details()

    # -- the panels' own parts -----------------------------------------------------------------

    def _approvals(self) -> None:
        rows: dict[str, tuple[str, ...]] = {}
        for s in views.pending_syncs(self.syncs):
            what = (
                f"sync of {views.short(s.get('commit'))}: {views.changes(s.get('summary') or {})}"
            )
            rows[f"sync:{s['id']}"] = (what, str(s["id"]), "the prune guard")
        for e in self.executions:
            rows[f"runbook:{e['id']}"] = (f"runbook {e.get('runbook_name')}", e["id"][:8], "a step")
        for a in self.agents_waiting:
            call = a.get("pending") or {}
            what = f"agent {a.get('agent_name')}: {call.get('name')}({views.arguments(call)})"
            rows[f"agent:{a['id']}"] = (what, a["id"][:8], "a tool call")
        self.table("approvals").show(rows)

    def _sync_detail(self) -> None:
        text = Text()
        if self.running is not None:
            text.append(f"sync {self.running['id']} running ({self.running['trigger']})\n", "bold")
            for line in self.running["progress"]:
                text.append(f"  {line}\n")
        else:
            table = self.table("syncs")
            key = table.selected() if table.row_count else None
            chosen = next((s for s in self.syncs if str(s["id"]) == key), None)
            if chosen is not None:
                text.append(f"sync {chosen['id']} {chosen['status']}", "bold")
                text.append(f"  {chosen.get('message') or ''}".rstrip().split("\n")[0] + "\n")
                for error in chosen.get("errors") or []:
                    text.append(f"  {error}\n", "red")
        self._home.query_one(Syncs).detail(text)

    def on_data_table_row_highlighted(self, event: Rows.RowHighlighted) -> None:
        if event.data_table.id == "syncs-table":
            self._sync_detail()

    # -- details -------------------------------------------------------------------------------

    def _installation_text(self, name: str) -> Text:
        i = self.installations.get(name)
        text = Text()
        if i is None:
            return Text(f"{name}: no longer installed")
        text.append(f"{name}", "bold")
        text.append(f"  {i.get('package')} {i.get('version') or ''}\n")
        text.append(f"status     {i.get('status')}  {i.get('reason') or ''}\n")
        text.append(f"commit     {views.short(i.get('commit'))}\n\ncontainers\n")
        for c in i.get("containers") or []:
            text.append(f"  {c.get('name')}  {c.get('state')}  {c.get('health') or ''}\n")
        text.append("\nhealth checks\n")
        for c in i.get("health") or []:
            line = f"  {c.get('check')}  {c.get('status')}  {c.get('detail') or ''}\n"
            text.append(line, "" if c.get("status") == "healthy" else "red")
        text.append("\nevents\n")
        for line in self.history.get(name, ()):
            text.append(f"  {line}\n")
        return text

    def _redraw_details(self) -> None:
        screen = self.screen
        if isinstance(screen, Details) and screen.key.startswith("installation:"):
            screen.show(self._installation_text(screen.key.removeprefix("installation:")))

    def on_ask(self, ask: Ask) -> None:
        panel = self._home.query_one(ContentSwitcher).current
        if panel == "installations" and ask.action == "open":
            text = self._installation_text(ask.key)
            self.push_screen(InstallationDetails(ask.key, text, self.connect))
        elif ask.action == "search":
            self._search(self._home.query_one(f"#{ask.key}", Searched))
        elif panel == "catalog":
            self.run_worker(lambda: self._package(ask.key), thread=True)
        elif panel == "incidents" and ask.action == "open":
            self.run_worker(lambda: self._incident(ask.key), thread=True)
        elif panel == "approvals":
            self._decide(ask.key, ask.action == "approve")
        elif panel == "incidents":
            self._confirm(f"{ask.action.capitalize()} incident {ask.key[:8]}?", ask.key, ask.action)

    def _decide(self, key: str, approved: bool) -> None:
        kind, _, ident = key.partition(":")
        if kind == "sync" and not approved:
            self.notify(
                "a held sync is not rejected: push a commit that keeps what it would remove, "
                "and the next sync replaces it",
                severity="warning",
            )
            return
        verb = "approve" if approved else "reject"
        self._confirm(f"{verb.capitalize()} {kind} {ident[:8]}?", key, verb)

    def _confirm(self, question: str, key: str, verb: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(lambda: self._send(key, verb), thread=True)

        self.push_screen(Confirm(question), answered)

    def _send(self, key: str, verb: str) -> None:
        """On a worker thread: the change, then a note of what came of it."""
        kind, _, ident = key.partition(":")
        try:
            with self.connect() as client:
                if kind == "sync":
                    client.approve(int(ident))
                elif kind == "runbook":
                    client.decide(ident, verb == "approve")
                elif kind == "agent":
                    client.decide_agent(ident, verb == "approve")
                elif verb == "acknowledge":
                    client.acknowledge_incident(key)
                else:
                    client.resolve_incident(key)
        except NebulaError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self.notify, f"{verb}: done ({key})")

    def _incident(self, key: str) -> None:
        """On a worker thread: one incident with its timeline, shown over the list."""
        try:
            with self.connect() as client:
                found = client.incident(key)
        except NebulaError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        text = Text(f"{found.get('title')}", "bold")
        text.append(f"\n{found.get('status')}  {found.get('severity')}  {found.get('id')}\n\n")
        for entry in found.get("timeline") or []:
            at = self.clock.time(entry.get("at"))
            text.append(f"{at}  {entry.get('kind'):<12} {entry.get('message')}\n")
        self.call_from_thread(self.push_screen, Details(f"incident:{key}", text))

    def _search(self, panel: Searched) -> None:
        """Read a searched panel's rows again, with its filters, on a worker thread."""
        filters = panel.filters()

        def read() -> None:
            try:
                with self.connect() as client:
                    if isinstance(panel, Audit):
                        found = client.audit(filters["actor"] or None, filters["target"] or None)
                        rows = {str(e["seq"]): views.audit_row(e, self.clock) for e in found}
                    else:
                        found = client.packages(filters["search"])
                        rows = {str(p["name"]): views.package_row(p) for p in found}
            except NebulaError as exc:
                self.call_from_thread(self.notify, str(exc), severity="error")
                return
            self.call_from_thread(lambda: panel.query_one(Rows).show(rows))

        self.run_worker(read, thread=True, group=str(panel.id), exclusive=True)

    def _package(self, name: str) -> None:
        """On a worker thread: one catalog package, shown over the catalog to install it."""
        try:
            with self.connect() as client:
                found = client.package(name)
        except NebulaError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.call_from_thread(self.push_screen, PackageDetails(found, self.connect))
