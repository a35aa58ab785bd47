"""Running nebulad: one process per data dir, serving its API until SIGTERM."""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import IO, Any

from nebula.daemon.config import DaemonConfig
from nebula.errors import NebulaError

log = logging.getLogger("nebulad")


class AlreadyRunningError(NebulaError):
    """Another nebulad holds this data dir."""


def hold_lock(data_dir: Path) -> IO[str]:
    """An exclusive lock on the data dir, held while the returned file stays open."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = (data_dir / "nebulad.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunningError(
            f"another nebulad (pid {pid}) is running for {data_dir}; stop it first, "
            "or give this one its own --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(as_json: bool) -> None:
    handler = logging.StreamHandler()
    # journald adds its own timestamps: plain lines carry level and message only
    handler.setFormatter(
        _JsonFormatter() if as_json else logging.Formatter("%(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run(config: DaemonConfig) -> None:
    """Run until SIGTERM or SIGINT: the sync in flight is finished before exiting."""
    from nebula.daemon.api import create_app
    from nebula.daemon.core import Daemon
    from nebula.daemon.gitsync import GitSource
    from nebula.daemon.server import serve
    from nebula.identity.ratelimit import RateLimit
    from nebula.identity.sessions import Sessions
    from nebula.identity.tokens import load_signing_key
    from nebula.kinds.registry import load_all
    from nebula.providers.docker import DockerProvider
    from nebula.store import Store
    from nebula.store.db import check_integrity

    setup_logging(config.log_json)
    lock = hold_lock(config.data_dir)
    check_integrity(config.store_url)  # every page, once: the CLI checks only the header
    store = Store(config.store_url)
    provider = DockerProvider(config.docker_host, files_dir=config.data_dir / "files")
    source = None
    if not config.watch:
        source = GitSource(
            config.source,
            config.data_dir / "repo",
            branch=config.branch,
            subfolder=config.subfolder,
        )
    daemon = Daemon(config, store, provider, source)
    sessions = Sessions(store, load_signing_key(config.data_dir))
    limit = RateLimit(config.rate_limit, config.rate_burst)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    load_all()
    # What is loaded by now (modules, models, the store's mappings) lives as long as nebulad:
    # kept out of the cycle collector's reach, a sync's full collections no longer walk it
    # (one such walk doubled the CPU of a 1,000-record zone's sync).
    gc.collect()
    gc.freeze()
    daemon.start()
    log.info(
        "nebulad following %s (%s), API on %s", config.source, config.branch, config.socket_path
    )
    try:
        serve(
            create_app(
                daemon,
                token=None,
                tcp=False,
                sessions=sessions,
                audit=daemon.audit,
                webhook_secret=config.webhook_secret,
            ),
            config.socket_path,
            app_tcp=create_app(
                daemon,
                token=config.token,
                tcp=True,
                sessions=sessions,
                rate_limit=limit,
                audit=daemon.audit,
                webhook_secret=config.webhook_secret,
                dashboard=config.ui,
            )
            if config.tcp_listen
            else None,
            tcp_listen=config.tcp_listen,
            stop=stop,
        )
    finally:
        log.info("stopping: finishing the sync in flight")
        daemon.stop()
        provider.close()
        store.close()
        lock.close()
