"""The dashboard's screens, one widget each; the app feeds them the API's records."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from nebula.tui import views
from nebula.tui.views import Clock


class Rows(DataTable[Text]):
    """A table kept in step with a list of records row by row: a row changes only where its
    cells did, so an event touching one of 500 installations redraws one row."""

    def __init__(self, columns: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns = columns
        self._shown: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for column in self._columns:
            self.add_column(column, key=column)

    def show(self, rows: dict[str, tuple[str, ...]]) -> None:
        for key in [k for k in self._shown if k not in rows]:
            self.remove_row(key)
            del self._shown[key]
        for key, cells in rows.items():
            self.put(key, cells)

    def put(self, key: str, cells: tuple[str, ...]) -> None:
        """Cells go in as plain `Text`: a name or message with `[...]` in it is shown as it
        is, not read as markup (and no markup is parsed each time a row is drawn)."""
        old = self._shown.get(key)
        if old is None:
            self.add_row(*(Text(cell, no_wrap=True) for cell in cells), key=key)
        else:
            for column, before, after in zip(self._columns, old, cells, strict=True):
                if before != after:
                    self.update_cell(key, column, Text(after, no_wrap=True))
        self._shown[key] = cells

    def cell(self, key: str, column: str) -> str:
        return self._shown[key][self._columns.index(column)]

    def set(self, key: str, column: str, value: str) -> None:
        if key in self._shown:
            cells = list(self._shown[key])
            cells[self._columns.index(column)] = value
            self.put(key, tuple(cells))

    def selected(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return str(key) if key is not None else None


class Overview(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static(id="overview-body")

    def show(
        self,
        status: dict[str, Any],
        installations: dict[str, dict[str, Any]],
        syncs: list[dict[str, Any]],
        clock: Clock,
    ) -> None:
        text = Text()
        if status:
            text.append(f"node       {clock.local(str(status.get('node', '')))}\n")
            source = f"{clock.local(str(status.get('source', '')))} ({status.get('branch', '')})"
            text.append(f"following  {source}\n")
            text.append("state      ")
            state = views.daemon_state(status)
            text.append(state + "\n", style="bold" if state == "following" else "bold yellow")
            text.append(f"applied    {views.short(status.get('applied_commit'))}\n")
            for part, fault in sorted((status.get("faults") or {}).items()):
                text.append(f"fault      {part}: {fault}\n", style="red")
        counts: dict[str, int] = {}
        for i in installations.values():
            counts[str(i.get("status"))] = counts.get(str(i.get("status")), 0) + 1
        listed = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        text.append(f"\ninstallations  {len(installations)}" + (f" ({listed})" if listed else ""))
        unhealthy = sum(1 for i in installations.values() if views.health(i.get("health") or [])
                        .startswith("unhealthy"))  # fmt: skip
        text.append(f"\nunhealthy      {unhealthy}\n\nlast syncs\n")
        for s in syncs[:5]:
            cells = views.sync_row(s, clock)
            text.append(f"  {cells[0]:>5}  {cells[1]}  {cells[2]:<8} {cells[3]:<10} {cells[4]}\n")
        if not syncs:
            text.append("  none yet\n")
        self.query_one("#overview-body", Static).update(text)


class Ask(Message):
    """A panel asks the app to act on its selected row: `action` names what (`open`,
    `approve`, `reject`, `acknowledge`, `resolve`), `key` the row; or to read its rows again
    (`search`, `key` the panel's name)."""

    def __init__(self, action: str, key: str) -> None:
        super().__init__()
        self.action = action
        self.key = key


class Panel(Vertical):
    """A table of records whose keys ask the app to act on the selected row."""

    def action_ask(self, action: str) -> None:
        key = self.query_one(Rows).selected()
        if key is not None:
            self.post_message(Ask(action, key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table's own key): open it, where the panel opens rows."""
        if any(b.key == "enter" for b in self.BINDINGS if isinstance(b, Binding)):
            event.stop()
            self.action_ask("open")


class Installations(Panel):
    BINDINGS = [Binding("enter", "ask('open')", "Details")]

    def compose(self) -> ComposeResult:
        yield Rows(views.INSTALLATION_COLUMNS, id="installations-table")


class Syncs(Vertical):
    def compose(self) -> ComposeResult:
        yield Rows(views.SYNC_COLUMNS, id="syncs-table")
        yield Static(id="sync-detail")

    def detail(self, text: Text) -> None:
        self.query_one("#sync-detail", Static).update(text)


class Approvals(Panel):
    BINDINGS = [Binding("y", "ask('approve')", "Approve"), Binding("r", "ask('reject')", "Reject")]

    def compose(self) -> ComposeResult:
        yield Rows(views.APPROVAL_COLUMNS, id="approvals-table")


class Incidents(Panel):
    BINDINGS = [
        Binding("enter", "ask('open')", "Timeline"),
        Binding("k", "ask('acknowledge')", "Acknowledge"),
        Binding("x", "ask('resolve')", "Resolve"),
    ]

    def compose(self) -> ComposeResult:
        yield Rows(views.INCIDENT_COLUMNS, id="incidents-table")


class Searched(Panel):
    """A table read on demand with the filters above it: when shown, and on Enter in a filter
    (`/` goes to the first). `filters()` gives their values by the filter's name."""

    BINDINGS = [Binding("slash", "filter", "Filter")]
    DEFAULT_CSS = """
    Searched > Horizontal { height: 3; }
    Searched Input { width: 1fr; }
    """
    FILTERS: tuple[str, ...] = ()
    COLUMNS: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        with Horizontal():
            for name in self.FILTERS:
                yield Input(placeholder=name, id=f"{self.id}-{name}")
        yield Rows(self.COLUMNS, id=f"{self.id}-table")

    def filters(self) -> dict[str, str]:
        return {n: self.query_one(f"#{self.id}-{n}", Input).value.strip() for n in self.FILTERS}

    def action_filter(self) -> None:
        self.query(Input).first().focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(Ask("search", str(self.id)))
        self.query_one(Rows).focus()


class Audit(Searched):
    FILTERS = ("actor", "target")
    COLUMNS = views.AUDIT_COLUMNS


class Catalog(Searched):
    BINDINGS = [*Searched.BINDINGS, Binding("enter", "ask('open')", "Show")]
    FILTERS = ("search",)
    COLUMNS = views.CATALOG_COLUMNS
