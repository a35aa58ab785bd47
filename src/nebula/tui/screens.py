"""The screens pushed over the dashboard: a record's details, and the confirmation of a change."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Label, Static

from nebula.cli.client import DaemonClient
from nebula.errors import NebulaError
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
        yield Footer()

    def show(self, text: Text) -> None:
        self.text = text
        self.query_one("#details-body", Static).update(text)


class InstallationDetails(Details):
    """An installation's state above its live log tail; `r` restarts its containers (asked
    first), and the tail follows them again once they are back."""

    BINDINGS = [*Details.BINDINGS, Binding("r", "restart", "Restart")]
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
        yield Footer()

    def action_restart(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._restart, thread=True)

        self.app.push_screen(Confirm(f"Restart the containers of {self.installation}?"), answered)

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
