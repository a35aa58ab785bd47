"""The screens pushed over the dashboard: a record's details, and the confirmation of a change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static

from nebula.cli.client import DaemonClient
from nebula.errors import NebulaError
from nebula.tui.keys import KeyBar
from nebula.tui.tail import LogTail


class Details(Screen[None]):
    """One record, redrawn by the app while it shows (`key` says which)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, key: str, text: Text) -> None:
        super().__init__()
        self.key = key
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text, id="details-body")
        yield KeyBar()

    def show(self, text: Text) -> None:
        self.text = text
        self.query_one("#details-body", Static).update(text)


class InstallationDetails(Details):
    """An installation's state above its live log tail; `r` restarts its containers (asked
    first), and the tail follows them again once they are back; `p` shows what the next sync
    would change of it (the daemon's plan, nothing applied)."""

    BINDINGS = [
        *Details.BINDINGS,
        Binding("r", "restart", "Restart"),
        Binding("p", "plan", "Plan"),
    ]
    DEFAULT_CSS = """
    InstallationDetails > VerticalScroll { height: auto; max-height: 50%; }
    InstallationDetails > LogTail { height: 1fr; border-top: solid $primary; }
    """

    def __init__(self, name: str, text: Text, connect: Callable[[], DaemonClient]) -> None:
        super().__init__(f"installation:{name}", text)
        self.installation = name
        self.connect = connect

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text, id="details-body")
        yield LogTail(self.connect, self.installation, id="tail")
        yield KeyBar()

    def action_restart(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._restart, thread=True)

        self.app.push_screen(Confirm(f"Restart the containers of {self.installation}?"), answered)

    def action_plan(self) -> None:
        self.run_worker(self._plan, thread=True)

    def _plan(self) -> None:
        """On a worker thread: the daemon's plan, this installation's changes shown."""
        try:
            with self.connect() as client:
                plan = client.plan()
        except NebulaError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), severity="error")
            return
        text = plan_text(self.installation, plan)
        self.app.call_from_thread(self.app.push_screen, Details(f"plan:{self.installation}", text))

    def _restart(self) -> None:
        """On a worker thread: the restart, then the tail of the containers started again."""
        try:
            with self.connect() as client:
                restarted = client.restart(self.installation)
        except NebulaError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.app.notify, f"restarted {', '.join(restarted)}")
        self.app.call_from_thread(self.query_one(LogTail).follow)


class PackageDetails(Screen[None]):
    """A catalog package, with a field per variable (defaults filled in, secrets hidden) and
    the installation's name; `ctrl+s` installs it after a confirmation, as `nebula install`
    does: a commit to the config repo, which the next sync applies."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "install", "Install"),
    ]
    DEFAULT_CSS = """
    PackageDetails > VerticalScroll { height: 1fr; }
    PackageDetails Horizontal { height: 3; }
    PackageDetails Horizontal > Label { width: 24; padding: 1 1 0 0; }
    PackageDetails Input { width: 1fr; }
    """

    def __init__(self, package: dict[str, Any], connect: Callable[[], DaemonClient]) -> None:
        super().__init__()
        self.package = package
        self.connect = connect

    def compose(self) -> ComposeResult:
        p = self.package
        text = Text(f"{p['name']}", "bold")
        text.append(f"  {p.get('version')}  ({p.get('category')})\n{p.get('description')}\n\n")
        text.append(f"services   {', '.join(p.get('services') or []) or '-'}\n")
        requires = [str(r.get("package")) for r in p.get("requires") or []]
        text.append(f"requires   {', '.join(requires) or '-'}\n")
        for grant, services in (p.get("grants") or {}).items():
            text.append(f"needs      {grant} ({', '.join(services)})\n", "yellow")
        with VerticalScroll():
            yield Static(text, id="package-body")
            with Horizontal():
                yield Label("installed as")
                yield Input(placeholder=str(p["name"]), id="install-name")
            for v in p.get("variables") or []:
                label = f"{v['name']}{' *' if v.get('required') else ''}"
                with Horizontal():
                    yield Label(label)
                    yield Input(
                        str(v.get("default") or ""),
                        placeholder=str(v.get("description") or ""),
                        password=bool(v.get("secret")),
                        id=f"var-{v['name']}",
                        classes="variable",
                    )
            yield Button("Install (ctrl+s)", variant="warning", id="install")
        yield KeyBar()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_install()

    def request(self) -> dict[str, Any]:
        """The body of the install: the values given (a blank one is left to the package's
        default, or generated when secret), and the grants it needs, which the question names."""
        values = {
            str(field.id).removeprefix("var-"): field.value
            for field in self.query(".variable").results(Input)
            if field.value
        }
        name = self.query_one("#install-name", Input).value.strip()
        return {
            "package": self.package["name"],
            **({"name": name} if name else {}),
            "values": values,
            "allow": sorted(self.package.get("grants") or {}),
        }

    def action_install(self) -> None:
        request = self.request()
        question = f"Install {request['package']} as {request.get('name', request['package'])}?"
        if request["allow"]:
            question += f" It is given: {', '.join(request['allow'])}."

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(lambda: self._install(request), thread=True)

        self.app.push_screen(Confirm(question), answered)

    def _install(self, request: dict[str, Any]) -> None:
        """On a worker thread: the commit; back to the catalog when it is made."""
        try:
            with self.connect() as client:
                done = client.install(request)
        except NebulaError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), severity="error")
            return
        note = f"installed: commit {str(done.get('commit'))[:8]}, applied by the next sync"
        self.app.call_from_thread(self.app.notify, note)
        self.app.call_from_thread(self.dismiss)


class Confirm(ModalScreen[bool]):
    """A yes/no question before a change is sent; Escape or n says no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Grid {
        grid-size: 2; grid-gutter: 1 2; grid-rows: auto 3; padding: 1 2;
        width: 60; max-width: 100%; height: auto; border: thick $warning; background: $surface;
    }
    Confirm Label { column-span: 2; width: 100%; }
    Confirm Button { width: 100%; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label(self.question, id="question")
            yield Button("Yes (y)", variant="warning", id="yes")
            yield Button("No (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


def plan_text(installation: str, plan: dict[str, Any]) -> Text:
    """The changes of one installation in the daemon's plan, one line each (`+ create
    container web-web: new`), or that there are none."""
    text = Text(f"What the next sync would change of {installation}\n\n", "bold")
    mine = [c for c in plan.get("changes") or [] if c.get("installation") == installation]
    signs = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}
    for change in mine:
        sign, style = signs.get(str(change.get("action")), ("*", ""))
        what = f"{change.get('kind', '')} {change.get('name', '')}".strip()
        text.append(f"{sign} {change.get('action')} {what}", style)
        text.append(f": {change['reason']}\n" if change.get("reason") else "\n")
    if not mine:
        text.append("nothing: it runs as the repo says\n")
    for problem in plan.get("problems") or []:
        text.append(f"! {problem}\n", "red")
    return text
