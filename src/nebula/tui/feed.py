"""The TUI's one connection to nebulad: a full read when it connects, then the event stream.

`Feed` runs on a thread of its own. Each time it (re)connects it reads everything the screens
show (`Loaded` items, then `Connected`), then follows `DaemonClient.events()`: each event is
passed on as `Streamed`, and an event that changes what a list holds (a sync finished, an
incident touched) is followed by a fresh read of that list only. It never polls. When the
daemon goes away it says so (`Lost`) and tries again, every `retry` seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nebula.cli.client import DaemonClient
from nebula.errors import NebulaError

LISTS = ("status", "installations", "syncs", "executions", "agents", "incidents")
# What each event changes, read again when it comes.
REREAD: dict[str, tuple[str, ...]] = {
    "sync_started": ("syncs",),
    "sync_finished": ("installations", "syncs", "status"),
    "sync_held": ("syncs", "status"),
    "suspended": ("status",),
    "resumed": ("status",),
    "rollback": ("status",),
    "incident": ("incidents",),
    "runbook": ("executions",),
    "agent": ("agents",),
}
SYNCS_SHOWN = 50


@dataclass(frozen=True)
class Loaded:
    """A fresh read of one list (`what` is one of `LISTS`)."""

    what: str
    value: Any


@dataclass(frozen=True)
class Connected:
    """The stream is open and every list was read."""

    where: str


@dataclass(frozen=True)
class Lost:
    """The daemon cannot be reached (or stopped): why, in a line."""

    reason: str


@dataclass(frozen=True)
class Streamed:
    kind: str
    data: dict[str, Any]


FeedItem = Loaded | Connected | Lost | Streamed


def read(client: DaemonClient, what: str) -> Loaded:
    """One list, as the screens want it."""
    value: Any
    if what == "status":
        value = client.status()
    elif what == "installations":
        value = client.installations()
    elif what == "syncs":
        value = client.syncs(SYNCS_SHOWN)
    elif what == "executions":
        value = [e for e in client.executions(limit=100) if e.get("status") == "waiting"]
    elif what == "agents":  # their executions waiting for a person
        value = client.waiting_agents()
    elif what == "incidents":
        value = client.incidents(limit=100)
    else:
        raise ValueError(what)
    return Loaded(what, value)


class Feed:
    def __init__(
        self, connect: Callable[[], DaemonClient], post: Callable[[FeedItem], object], retry: float
    ) -> None:
        self._connect = connect
        self._post = post
        self._retry = retry
        self._stop = threading.Event()
        self._client: DaemonClient | None = None
        self.attempts = 0  # connections tried so far
        self._thread = threading.Thread(target=self._run, name="nebula-tui-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread: closing the client ends a stream blocked on its next line."""
        self._stop.set()
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            reason = "the daemon closed the event stream (it is stopping)"
            self.attempts += 1
            try:
                with self._connect() as client:
                    self._client = client
                    self._follow(client)
            except NebulaError as exc:
                reason = str(exc)
            except Exception as exc:  # a stream cut mid-read surfaces as httpx's own errors
                reason = f"lost the connection: {exc}"
            if self._stop.is_set():
                return
            self._post(Lost(reason))
            self._stop.wait(self._retry)

    def _follow(self, client: DaemonClient) -> None:
        stream = client.events()
        next(stream)  # the first comment: subscribed, so nothing after the reads below is missed
        for what in LISTS:
            self._post(read(client, what))
        self._post(Connected(client.where))
        for item in stream:
            if self._stop.is_set():
                return
            if item.kind is None:
                continue
            self._post(Streamed(item.kind, item.data))
            for what in REREAD.get(item.kind, ()):
                self._post(read(client, what))
