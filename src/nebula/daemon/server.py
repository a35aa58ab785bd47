"""Serving the API: uvicorn on the unix socket, and on TCP when asked.

    stop = threading.Event()
    serve(create_app(daemon, token=None, tcp=False), socket_path,
          app_tcp=create_app(daemon, token=token, tcp=True), tcp_listen="0.0.0.0:7733",
          stop=stop)                 # blocks; returns once `stop` is set and both servers ended

The sockets are bound here, not by uvicorn, so the unix socket is private before anyone can
connect: bind, chmod 0600, check the mode really is 0600 (and the file ours), and only then
listen. Its folder is created 0700 when missing. A socket file left by a dead daemon is
replaced; one a live daemon answers on is not (`ServerError`), nor is a file that is not a
socket. The socket file is removed on the way out.

Each connection to the unix socket carries its peer's credentials (SO_PEERCRED, read once
when it is accepted) to the app in `scope["nebula.peer"]`; the app decides whom it trusts.

Both servers share one event loop in the calling thread. Signals are left to the caller (the
daemon decides what SIGTERM means); uvicorn logs warnings only and no access log. Stopping is
prompt: open event streams are ended (`app.state.closing`), and any request still running
after `GRACE_SECONDS` is cancelled.

Slow or idle clients cannot pile up: a request's headers must arrive within `HEADER_TIMEOUT`
of the connection opening (or of the previous response), else the connection is closed, and
each listener holds at most `MAX_CONNECTIONS` connections; one more is closed at once. (uvicorn
alone closes only idle keep-alive connections, and any byte restarts that clock; its
`limit_concurrency` answers 503 once headers have arrived, so a connection that never sends
them holds its file descriptor forever.) The body's own deadline is the app's
(`daemon.api.BODY_TIMEOUT`).

Import-light (uvicorn loads inside `serve`): the CLI imports `default_socket_path` from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from nebula.errors import NebulaError

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger("nebula.daemon.server")

SOCKET_NAME = "nebulad.sock"
GRACE_SECONDS = 3
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 512
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the trailing NUL


class ServerError(NebulaError):
    """The API cannot listen: the socket path is taken, too long, or not ours."""


def default_socket_path() -> Path:
    """`nebulad.sock` in the user's data dir: where nebulad listens and the CLI looks."""
    return Path(platformdirs.user_data_dir("nebula")) / SOCKET_NAME


def serve(
    app_unix: Starlette,
    socket_path: Path | str,
    *,
    app_tcp: Starlette | None = None,
    tcp_listen: str | None = None,
    stop: threading.Event,
    ready: threading.Event | None = None,
    log_level: str = "warning",
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> None:
    """Serve `app_unix` on the socket (and `app_tcp` on `tcp_listen`) until `stop` is set.

    `ready` is set once every listener accepts connections. Raises `ServerError` when a
    socket cannot be bound; the unix socket is already private when this returns or raises.
    `header_timeout` and `max_connections` bound each listener's clients (module docstring).
    """
    if tcp_listen and app_tcp is None:
        raise ServerError("tcp_listen given without an app to serve on it")
    path = Path(socket_path).absolute()
    unix_sock = bind_unix(path)
    inode = path.stat().st_ino
    listeners: list[tuple[Starlette, socket.socket]] = [(app_unix, unix_sock)]
    try:
        if tcp_listen and app_tcp is not None:
            listeners.append((app_tcp, bind_tcp(tcp_listen)))
        limits = _Limits(header_timeout, max_connections)
        asyncio.run(_serve_all(listeners, stop, ready, log_level, limits))
    finally:
        for _, sock in listeners:
            sock.close()
        _remove_socket(path, inode)


def bind_unix(path: Path) -> socket.socket:
    """A unix socket bound at `path`, mode 0600, not yet listening."""
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ServerError(
            f"socket path {path} is longer than the {_UNIX_PATH_MAX} bytes a unix socket allows: "
            "choose a shorter one"
        )
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        info = os.stat(path)
        if not stat.S_ISSOCK(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o600:
            raise ServerError(f"{path} did not become a mode 0600 socket: refusing to listen")
        if info.st_uid != os.geteuid():
            raise ServerError(f"{path} is not owned by this user: refusing to listen")
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    except ServerError:
        sock.close()
        raise
    return sock


def _clear_stale(path: Path) -> None:
    """Remove a socket no daemon answers on; refuse a live one, or anything not a socket."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ServerError(f"{path} exists and is not a socket: move it away or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left by a daemon that died
        return
    finally:
        probe.close()
    raise ServerError(f"another nebulad is already listening on {path}")


def bind_tcp(listen: str) -> socket.socket:
    """A TCP socket bound to `HOST:PORT` (`[::1]:PORT` for IPv6), not yet listening."""
    host, port = parse_listen(listen)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    return sock


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ServerError(f"listen address {listen!r} is not HOST:PORT (e.g. 127.0.0.1:7733)")
    return host, int(port)


@dataclass
class _Limits:
    header_timeout: float
    max_connections: int
    warned_at: float = float("-inf")

    def warn_full(self) -> None:
        """Log refused connections once a minute, not each one (a flood would flood the log)."""
        now = time.monotonic()
        if now - self.warned_at >= 60:
            self.warned_at = now
            log.warning(
                "refusing connections: %d are open on a listener, the most allowed",
                self.max_connections,
            )


async def _serve_all(
    listeners: list[tuple[Starlette, socket.socket]],
    stop: threading.Event,
    ready: threading.Event | None,
    log_level: str,
    limits: _Limits,
) -> None:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield  # the daemon owns SIGTERM and SIGINT: it sets `stop`

        async def on_tick(self, counter: int) -> bool:
            if stop.is_set():
                self.should_exit = True
            return await super().on_tick(counter)

    from uvicorn.protocols.http.h11_impl import H11Protocol

    from nebula.daemon.peer import PEER_KEY, peer_credentials

    class _BoundedProtocol(H11Protocol):
        """HTTP/1.1 with a deadline for each request's headers, and a cap on connections."""

        deadline: asyncio.TimerHandle | None = None
        waiting_after: object = None  # the request cycle that was current when the clock started

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                limits.warn_full()
                transport.close()
                return
            self._start_clock()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self.waiting_after:  # a new request's headers are in
                self._stop_clock()

        def on_response_complete(self) -> None:
            self._start_clock()  # for the next request on this connection
            super().on_response_complete()  # may take a pipelined request's headers
            if self.transport.is_closing() or self.cycle is not self.waiting_after:
                self._stop_clock()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_clock()
            super().connection_lost(exc)

        def _start_clock(self) -> None:
            self._stop_clock()
            self.waiting_after = self.cycle
            self.deadline = self.loop.call_later(limits.header_timeout, self._too_slow)

        def _stop_clock(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _too_slow(self) -> None:
            self.deadline = None
            if self.cycle is self.waiting_after:
                self.transport.close()

    class _PeerProtocol(_BoundedProtocol):
        """HTTP on the unix socket: every request of a connection knows its peer."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if transport.is_closing():
                return
            peer = peer_credentials(transport.get_extra_info("socket"))
            app = self.app

            async def with_peer(scope: Any, receive: Any, send: Any) -> None:
                scope[PEER_KEY] = peer
                await app(scope, receive, send)

            self.app = with_peer

    servers: list[tuple[_Server, socket.socket]] = []
    for app, sock in listeners:
        config = uvicorn.Config(
            app,
            http=_PeerProtocol if sock.family == socket.AF_UNIX else _BoundedProtocol,
            lifespan="off",
            log_config=None,
            log_level=log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
        servers.append((_Server(config), sock))
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.01)
    else:
        if ready is not None:
            ready.set()
    try:
        while not stop.is_set() and not any(task.done() for task in tasks):
            await asyncio.sleep(0.1)
    finally:
        for app, _ in listeners:
            closing = getattr(app.state, "closing", None)
            if isinstance(closing, threading.Event):
                closing.set()
        for server, _ in servers:
            server.should_exit = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise ServerError(f"the API server failed: {result}") from result


def _remove_socket(path: Path, inode: int) -> None:
    """Remove the socket file, unless another daemon has bound a new one there since."""
    with contextlib.suppress(OSError):
        if path.lstat().st_ino == inode:
            path.unlink()
