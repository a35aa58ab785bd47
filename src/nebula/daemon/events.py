"""A small publish/subscribe bus: the daemon publishes, each API event stream subscribes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from nebula.daemon.control import Event

_CLOSED = object()


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[queue.Queue[object]] = set()

    def publish(self, kind: str, **data: Any) -> None:
        event = Event(kind, data, datetime.now(UTC))
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.put(event)

    def subscribe(self, heartbeat: float | None = None) -> Iterator[Event]:
        """Events from this call on (registered now, not at the first `next`); with `heartbeat`,
        an Event("heartbeat") whenever none came for that long (so a stream notices a gone
        client). Ends when the bus closes."""
        inbox: queue.Queue[object] = queue.Queue()
        with self._lock:
            self._subscribers.add(inbox)
        return self._drain(inbox, heartbeat)

    def _drain(self, inbox: queue.Queue[object], heartbeat: float | None) -> Iterator[Event]:
        try:
            while True:
                try:
                    item = inbox.get(timeout=heartbeat)
                except queue.Empty:
                    yield Event("heartbeat", {}, datetime.now(UTC))
                    continue
                if item is _CLOSED:
                    return
                assert isinstance(item, Event)
                yield item
        finally:
            with self._lock:
                self._subscribers.discard(inbox)

    def close(self) -> None:
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.put(_CLOSED)
