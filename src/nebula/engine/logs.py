"""The logs of an installation's containers, merged (`nebula logs`).

Each container's log is one request to the Docker Engine, read by a thread of its own, so every
service's lines show as they arrive and one slow container holds up none of the others.
"""

from __future__ import annotations

import difflib
import queue
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from nebula.errors import NebulaError
from nebula.kinds.packages.types import ObservedContainer
from nebula.providers.docker import DockerProvider, LogLine, LogStream

__all__ = ["LogLine", "ServiceLine", "UnknownTargetError", "containers", "follow", "read"]


class UnknownTargetError(NebulaError):
    """The installation or service asked for has no container on this Docker Engine."""


@dataclass(frozen=True)
class ServiceLine:
    """A log line and the service whose container wrote it."""

    service: str
    line: LogLine

    def to_dict(self) -> dict[str, str]:
        return {
            "service": self.service,
            "container": self.line.container,
            "stream": self.line.stream,
            "time": self.line.time,
            "message": self.line.message,
        }


def containers(
    provider: DockerProvider, installation: str, service: str | None = None
) -> list[ObservedContainer]:
    """The containers of `installation` (only `service`'s when given), running or not."""
    observed = provider.observe().containers
    found = [c for c in observed if c.installation == installation]
    if not found:
        known = sorted({c.installation for c in observed})
        where = f"on Docker Engine {provider.base_url}"
        raise UnknownTargetError(_unknown("installation", installation, where, known))
    if service is None:
        return found
    chosen = [c for c in found if c.service == service]
    if not chosen:
        known = sorted(c.service for c in found)
        raise UnknownTargetError(
            _unknown("service", service, f"in installation {installation}", known)
        )
    return chosen


def read(
    provider: DockerProvider,
    containers: Sequence[ObservedContainer],
    *,
    tail: int | None,
    since: float | None,
) -> list[ServiceLine]:
    """The last `tail` lines (None: all) of each container since `since` (unix time), merged
    in the order they were written."""
    lines = _merged(provider, containers, follow=False, tail=tail, since=since)
    return sorted(lines, key=lambda entry: entry.line.time)


def follow(
    provider: DockerProvider,
    containers: Sequence[ObservedContainer],
    *,
    tail: int | None,
    since: float | None,
) -> Generator[ServiceLine, None, None]:
    """As `read`, then every new line as it arrives, until each container has stopped. Closing
    the iterator (or Ctrl-C while it waits) closes every stream."""
    return _merged(provider, containers, follow=True, tail=tail, since=since)


def _merged(
    provider: DockerProvider,
    containers: Sequence[ObservedContainer],
    *,
    follow: bool,
    tail: int | None,
    since: float | None,
) -> Generator[ServiceLine, None, None]:
    arrived: queue.Queue[ServiceLine | Exception | None] = queue.Queue()

    def pump(service: str, stream: LogStream) -> None:
        try:
            for line in stream:
                arrived.put(ServiceLine(service, line))
        except Exception as exc:  # handed to the caller's thread, raised there
            arrived.put(exc)
        arrived.put(None)  # this stream has ended

    streams: list[LogStream] = []
    try:
        for c in containers:
            stream = provider.log_stream(c.name, follow=follow, tail=tail, since=since)
            streams.append(stream)
            threading.Thread(
                target=pump, args=(c.service, stream), name=f"logs-{c.name}", daemon=True
            ).start()
        running = len(streams)
        while running:
            item = arrived.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for stream in streams:
            stream.close()


def _unknown(kind: str, name: str, where: str, known: list[str]) -> str:
    """`no service 'wbe' in installation blog; did you mean 'web'? (known: db, web)`."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none: nothing Nebula manages runs there"
    return f"no {kind} {name!r} {where}{hint} (known: {listing})"
