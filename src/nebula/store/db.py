"""Opening the state database: URL, engine, and the automatic migration to the newest schema.

SQLite (a file under the user's data dir) is the default and needs nothing installed;
PostgreSQL (`postgresql+psycopg://...`) serves clusters. Any database is migrated to
`HEAD_REVISION` when it is opened, so the daemon and the CLI never meet an old schema. A database
already at head costs two small queries and never imports Alembic. This module itself imports
SQLAlchemy only when an engine is made.

A SQLite database is its owner's alone: it holds password hashes, sealed secrets and the
audit log. A new one is created with mode 0600 (SQLite gives its -wal and -shm files the same
mode) in a data dir made with mode 0700, and opening one that others may read logs a warning
(which the CLI, configuring no logging, prints on stderr). A file that is not a SQLite database,
an empty one included, is refused rather than taken for a new database; `check_integrity`, run
by nebulad at start, also reads every page (`PRAGMA quick_check`).

To change the schema: edit `models.py`, add `migrations/versions/000N_<what>.py` (revision
"000N", down_revision the previous one) and set `HEAD_REVISION` to it. The test suite checks that
the migrations reach exactly the models' schema, on both backends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nebula.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine
    from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

HEAD_REVISION = "0015"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_PRAGMAS = (  # on every SQLite connection (see `_sqlite_pragmas` for why)
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
)

# Serializes migrations when several nodes open one fresh PostgreSQL database at once.
_MIGRATION_LOCK_KEY = 0x6E6562756C61  # "nebula"

_RECOVER = (
    "restore it from a backup, or move it away (mv {file} {file}.broken) to start with an "
    "empty database"
)


def default_url() -> str:
    """`NEBULA_DATABASE_URL`, else a SQLite file in the user's data dir (created if missing)."""
    configured = os.environ.get("NEBULA_DATABASE_URL")
    if configured:
        return configured
    import platformdirs

    data_dir = Path(platformdirs.user_data_dir("nebula"))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{data_dir / 'nebula.db'}"


def exists(url: str) -> bool:
    """Whether the database at `url` is there already, so that opening it creates nothing: a
    SQLite file that exists (an in-memory one never does); any other database is taken to."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite":
        return True
    file = _sqlite_file(parsed)
    return file is not None and file.is_file()


def masked(url: str) -> str:
    """The URL with any password replaced by ***, fit for messages and logs."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^/:@]*:).*@", r"\1***@", url)


def describe(error: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's statement dump and help link."""
    from sqlalchemy.exc import DBAPIError

    return str(error.orig if isinstance(error, DBAPIError) else error).strip()


def open_engine(url: str) -> Engine:
    """An engine on `url` whose database is at `HEAD_REVISION`; `StoreError` if it cannot be."""
    from sqlalchemy import create_engine, event, make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"invalid database URL {masked(url)!r}: {e}") from None
    backend = parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise StoreError(
            f"unsupported database {masked(url)}: use sqlite:///PATH or postgresql+psycopg://..."
        )
    file = _sqlite_file(parsed) if backend == "sqlite" else None
    if file is not None:
        if not file.exists():
            _create_sqlite(file)
        _check_header(file)
        _warn_if_shared(file)
    connect_args: dict[str, Any] = {}
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 10  # fail fast on a host that drops packets
    try:
        engine = create_engine(parsed, connect_args=connect_args)
    except (SQLAlchemyError, ImportError) as e:
        raise StoreError(f"cannot use database {masked(url)}: {e}") from None
    _ping_when_idle(engine)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except SQLAlchemyError as e:
        engine.dispose()
        raise StoreError(f"cannot open database {masked(url)}: {describe(e)}") from e
    except StoreError:
        engine.dispose()
        raise
    return engine


PING_AFTER_IDLE_S = 2.0
"""A pooled connection unused for longer is pinged before it is handed out again."""


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, for connections that sat idle in the pool only: a server that
    restarted, or a connection a firewall dropped, is then met with a new connection rather
    than a failed statement. A connection returned a moment ago is not pinged again: a sync
    takes out a dozen in a row, and each ping is a round trip to the server. (A disconnect
    met by a statement still invalidates the whole pool: SQLAlchemy's own handling.)"""
    from sqlalchemy import event
    from sqlalchemy.exc import DisconnectionError

    def returned(_dbapi: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def taken(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")  # none yet for a connection just made
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except engine.dialect.loaded_dbapi.Error as exc:  # the pool connects anew
            raise DisconnectionError(str(exc)) from exc

    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", taken)


def check_integrity(url: str) -> None:
    """`PRAGMA quick_check` of a SQLite database; `StoreError` saying what is damaged and what
    to do. It reads every page, so nebulad runs it once at start and the CLI does not. Nothing
    is checked for a PostgreSQL database (that is left to its server) or a SQLite one yet
    to be created."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # `open_engine` says why
    file = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if file is None or not file.exists():
        return
    _check_header(file)
    try:
        with contextlib.closing(sqlite3.connect(file, timeout=10)) as connection:
            found = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
    except sqlite3.OperationalError as exc:  # not the file's fault: locked, unreadable, ...
        raise StoreError(f"cannot check database {file}: {exc}") from None
    except sqlite3.DatabaseError as exc:  # too damaged to check
        found = [str(exc)]
    if found != ["ok"]:
        lines = [line for row in found for line in row.splitlines() if not line.startswith("***")]
        raise StoreError(
            f"database {file} is damaged ({'; '.join(lines)}): " + _RECOVER.format(file=file)
        )


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or a `file:` URI."""
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("uri"):
        return None
    return Path(database)


def _create_sqlite(file: Path) -> None:
    """A new, empty database at `file`, for its owner only. It is made aside and linked into
    place, so no other process opening it meanwhile ever finds an empty file there."""
    try:
        handle, made = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")  # mode 0600
        os.close(handle)
        try:
            with contextlib.closing(sqlite3.connect(made)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")  # writes the header
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(made, file)
        finally:
            os.unlink(made)
    except OSError as exc:
        raise StoreError(
            f"cannot open database {file}: cannot create it in {file.parent}: {exc.strerror}"
        ) from None
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {file}: cannot create it: {exc}") from None


def _check_header(file: Path) -> None:
    """Refuse a file that is not a SQLite database: an empty or overwritten one is damage to
    report, not a new database to start. Read through SQLite, never by opening the file here:
    closing a descriptor of the database file would drop the locks that this process's SQLite
    connections hold on it."""
    try:
        if file.stat().st_size == 0:
            what = "empty"
        else:
            with contextlib.closing(sqlite3.connect(file, timeout=10)) as connection:
                connection.execute("PRAGMA schema_version")  # reads the header
            return
    except OSError as exc:
        raise StoreError(f"cannot read database {file}: {exc.strerror}") from None
    except sqlite3.OperationalError as exc:  # not the file's fault: locked, unreadable, ...
        raise StoreError(f"cannot read database {file}: {exc}") from None
    except sqlite3.DatabaseError:
        what = "not a SQLite database"
    raise StoreError(
        f"database {file} is {what}: it was truncated or overwritten; " + _RECOVER.format(file=file)
    )


def _warn_if_shared(file: Path) -> None:
    for path in (
        file.parent,
        file,
        file.with_name(f"{file.name}-wal"),
        file.with_name(f"{file.name}-shm"),
    ):
        with contextlib.suppress(OSError):
            _warn_shared(path, path.stat().st_mode)


@cache  # once a process for each path and mode: the CLI opens the store more than once
def _warn_shared(path: Path, mode: int) -> None:
    if mode & 0o077:
        wanted = "700" if path.is_dir() else "600"
        log.warning(
            "%s is open to other users (mode %o): the database holds password hashes, sealed "
            "secrets and the audit log; run: chmod %s %s",
            path,
            mode & 0o777,
            wanted,
            path,
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite leaves foreign keys (and so ON DELETE SET NULL) off unless asked, per connection.
    # WAL lets the CLI read while the daemon writes; with WAL, synchronous=NORMAL stays
    # consistent after a crash and saves an fsync per commit (the store records what Docker and
    # git hold; a power cut may lose the last records, never corrupt the file). A busy timeout
    # lets parallel applies wait for each other's short writes instead of failing.
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def current_revision(engine: Engine) -> str | None:
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the database to `HEAD_REVISION` (an empty database gets the whole schema).

    Processes opening one new database at once take turns: on PostgreSQL through an advisory
    lock, on SQLite through a lock on its folder (SQLite's DDL is not transactional enough to
    keep a second migration from creating the same tables)."""
    if current_revision(engine) == HEAD_REVISION:
        return
    with _sqlite_migration_lock(engine):
        if current_revision(engine) != HEAD_REVISION:  # not migrated meanwhile by another
            _upgrade(engine)


@contextlib.contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    file = _sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
    if file is None:
        yield
        return
    # The folder, not the file: closing a descriptor of the database file would drop the
    # POSIX locks SQLite holds on it in this process. flock and those locks do not meet.
    fd = os.open(file.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError
    from sqlalchemy import text

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as e:
            # Typically a database written by a newer Nebula than this one.
            shown = engine.url.render_as_string(hide_password=True)
            raise StoreError(f"cannot migrate database {shown}: {e}") from e
