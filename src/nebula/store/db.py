"""Opening the state database: URL, engine, and the automatic migration to the newest schema.

SQLite (a file under the user's data dir) is the default and needs nothing installed;
PostgreSQL (`postgresql+psycopg://...`) serves clusters. Any database is migrated to
`HEAD_REVISION` when it is opened, so the daemon and the CLI never meet an old schema. A database
already at head costs two small queries and never imports Alembic. This module itself imports
SQLAlchemy only when an engine is made (`store.lean` reads the URL and the head without it).

To change the schema: edit `models.py`, add `migrations/versions/000N_<what>.py` (revision
"000N", down_revision the previous one) and set `HEAD_REVISION` to it. The test suite checks that
the migrations reach exactly the models' schema, on both backends.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nebula.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.exc import SQLAlchemyError

HEAD_REVISION = "0007"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_PRAGMAS = (  # on every SQLite connection (see `_sqlite_pragmas` for why)
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
)

# Serializes migrations when several nodes open one fresh PostgreSQL database at once.
_MIGRATION_LOCK_KEY = 0x6E6562756C61  # "nebula"


def default_url() -> str:
    """`NEBULA_DATABASE_URL`, else a SQLite file in the user's data dir (created if missing)."""
    configured = os.environ.get("NEBULA_DATABASE_URL")
    if configured:
        return configured
    import platformdirs

    data_dir = Path(platformdirs.user_data_dir("nebula"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'nebula.db'}"


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
    connect_args: dict[str, Any] = {}
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 10  # fail fast on a host that drops packets
    try:
        engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as e:
        raise StoreError(f"cannot use database {masked(url)}: {e}") from None
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
    """Bring the database to `HEAD_REVISION` (an empty database gets the whole schema)."""
    if current_revision(engine) == HEAD_REVISION:
        return
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
