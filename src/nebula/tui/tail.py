"""An installation's live log tail, as `docker compose logs -f` shows it: `service | message`.

`LogTail` reads the last lines and then each new one from the daemon's log stream, on a
thread of its own with a connection of its own; closing that connection ends the stream, so
the thread ends when the widget goes away or follows again (after a restart, whose stop ends
the daemon's stream). Lines come back to the widget as messages, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import RichLog

from nebula.cli.client import DaemonClient
from nebula.errors import NebulaError

TAIL = 100  # lines shown from before the screen opened
KEPT = 2000  # lines kept on screen
COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "red")


class Wrote(Message):
    """A log line (`data`, a `log` event's), or a note on the stream, for the tail that
    follows `generation`."""

    def __init__(self, generation: int, data: dict[str, Any], note: Text | None = None) -> None:
        super().__init__()
        self.generation = generation
        self.data = data
        self.note = note


class LogTail(RichLog):
    def __init__(self, connect: Callable[[], DaemonClient], installation: str, **kw: Any) -> None:
        super().__init__(max_lines=KEPT, wrap=False, markup=False, **kw)
        self.connect = connect
        self.installation = installation
        self.generation = 0
        self._client: DaemonClient | None = None
        self._lock = threading.Lock()
        self._colours: dict[str, str] = {}

    def on_mount(self) -> None:
        self.follow()

    def on_unmount(self) -> None:
        self._stop()

    def follow(self) -> None:
        """Show the last lines and follow from there (again, when it was following)."""
        self._stop()
        self.clear()
        self._colours.clear()
        client = self.connect()
        with self._lock:
            self.generation += 1
            self._client = client
        generation = self.generation
        threading.Thread(
            target=self._read, args=(client, generation), name="nebula-tui-logs", daemon=True
        ).start()

    def _stop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self.generation += 1
        if client is not None:
            client.close()

    def _read(self, client: DaemonClient, generation: int) -> None:
        """On the tail's thread: each line as it comes, then why the stream ended."""
        note = Text("the containers stopped: the tail ended (r restarts them)", "dim")
        try:
            for item in client.follow_logs(self.installation, tail=TAIL):
                if item.kind == "log":
                    self.post_message(Wrote(generation, item.data))
        except NebulaError as exc:
            note = Text(str(exc), "red")
        except Exception as exc:  # a stream cut mid-read surfaces as httpx's own errors
            note = Text(f"lost the log stream: {exc}", "red")
        finally:
            client.close()
        self.post_message(Wrote(generation, {}, note))

    def _line(self, data: dict[str, Any]) -> Text:
        service = str(data.get("service") or data.get("container") or "?")
        colour = self._colours.setdefault(service, COLOURS[len(self._colours) % len(COLOURS)])
        width = max(len(s) for s in self._colours)
        line = Text(f"{service:<{width}} | ", colour)
        line.append(str(data.get("message", "")))
        return line

    def on_wrote(self, message: Wrote) -> None:
        if message.generation == self.generation:  # not a tail stopped since
            self.write(message.note or self._line(message.data))
