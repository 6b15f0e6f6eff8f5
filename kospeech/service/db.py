"""Database engine, sessions and schema migrations (Alembic, applied at startup).

Any SQLAlchemy URL works: the default SQLite file under ``data_dir`` (one machine), or PostgreSQL through psycopg 3
(``postgresql+psycopg://user@host/db``) when several servers and workers share one database. SQLite connections get
``foreign_keys=ON`` (so deleting a user cascades), WAL journaling and a busy timeout (a server and a worker process
write the same file).
"""

from __future__ import annotations

import fcntl
import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from kospeech.errors import ConfigError, SchemaError

__all__ = [
    "MAX_CONNECTIONS",
    "MIGRATIONS_DIR",
    "create_db_engine",
    "database_now",
    "migrate",
    "migration_connection",
    "session_factory",
    "session_scope",
]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic script folder shipped in the package."""

_SQLITE_BUSY_MS = 30_000

_MIGRATION_LOCK_KEY = 0x6B6F7370  # "kosp": the advisory lock migrations take on PostgreSQL

MAX_CONNECTIONS = 40
"""Database connections one process may open: as many as the server has worker threads (anyio's default 40), so a
thread never waits for a connection that a request waiting for a thread holds."""

_KEPT_CONNECTIONS = 5


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, and its connections get the pragmas above.

    Args:
        url: a SQLAlchemy URL.

    Returns:
        The engine (connections are checked before use, so a restarted PostgreSQL is reconnected); up to
        :data:`MAX_CONNECTIONS` connections, of which 5 are kept open when idle.

    Raises:
        ConfigError: an in-memory SQLite database (each connection would get an empty one of its own).
    """
    parsed = make_url(url)
    pool = {"pool_size": _KEPT_CONNECTIONS, "max_overflow": MAX_CONNECTIONS - _KEPT_CONNECTIONS}
    if parsed.get_backend_name() == "sqlite":
        if _sqlite_file(parsed.database) is None:
            raise ConfigError(
                f"{url!r} is an in-memory SQLite database, which the service's threads and processes cannot share; "
                "name a file (sqlite:////path/service.db)"
            )
        # a URI filename (``sqlite:///file:/path?mode=ro&uri=true``) names an existing file, not a folder to make
        if not parsed.database.startswith("file:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_MS / 1000}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def _sqlite_file(database: Optional[str]) -> Optional[str]:
    """The file a SQLite URL's database part names (a URI filename's path, ``file:/path?mode=ro``), or ``None`` for
    an in-memory database."""
    if database and database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return None if not database or database == ":memory:" else database


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on a file beside a SQLite database, held until the migration has committed (nothing for
    other databases)."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with open(f"{_sqlite_file(engine.url.database)}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose one transaction holds the migration lock (PostgreSQL's transaction-scoped advisory lock, or
    a file lock beside a SQLite database) until it commits: what :func:`migrate` and Alembic's own command line
    (``migrations/env.py``) run migrations on.

    On SQLite, foreign keys are off during the migration and checked before it commits: Alembic changes a SQLite
    table by copying it into a new one and dropping the old, and with foreign keys on that drop would delete every
    row that refers to the table (``ON DELETE CASCADE``: a user's utterances, versions and jobs).

    Raises:
        SchemaError: on SQLite, the migration left rows whose parent row is gone (nothing is committed).
    """
    sqlite = engine.dialect.name == "sqlite"
    with _sqlite_migration_lock(engine), engine.connect() as connection:
        if sqlite:  # SQLite ignores this pragma inside a transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if engine.dialect.name == "postgresql":  # held until this transaction ends
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
                elif sqlite:  # pysqlite begins a transaction before DML only: DDL would commit alone
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:  # the connection goes back to the pool
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _check_foreign_keys(connection: Connection) -> None:
    """Refuse to commit a SQLite migration that left rows referring to a missing row."""
    orphans = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if orphans:
        tables = sorted({row[0] for row in orphans})
        raise SchemaError(
            f"the migration left {len(orphans)} rows in {', '.join(tables)} whose parent row is gone; nothing was "
            "changed"
        )


def migrate(engine: Engine) -> None:
    """Bring the database schema to the newest migration (``alembic upgrade head``), on the engine's connection.

    Safe to run from several processes at once (servers and workers starting together on a new database): they
    migrate one at a time, under PostgreSQL's transaction-scoped advisory lock or a file lock beside a SQLite
    database, and the later ones find the schema current. All steps run in one transaction, so an upgrade refused at
    any step (or a process killed during it) leaves the schema as it was.

    Raises:
        SchemaError: data a migration refuses (ids that differ only in case), or a schema newer than this release.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with migration_connection(engine) as connection:
        _check_known_revision(connection, ScriptDirectory.from_config(config))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    logger.info("database schema is at the newest migration")


def _check_known_revision(connection: Connection, scripts: ScriptDirectory) -> None:
    """Refuse a database whose schema a newer release migrated: this release cannot read it, nor take it back."""
    known = {script.revision for script in scripts.walk_revisions()}
    current = MigrationContext.configure(connection).get_current_heads()
    unknown = sorted(set(current) - known)
    if unknown:
        raise SchemaError(
            f"the database's schema is at revision {', '.join(unknown)}, which this kospeech release does not know "
            f"(its newest is {scripts.get_current_head()}): a newer release migrated it; run that release (or a "
            "newer one) against this database"
        )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine`` that keep loaded values after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed at the end of the block, rolled back on an exception, always closed."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def database_now(session: Session) -> datetime:
    """The time leases are measured in: the database server's clock on PostgreSQL, so that servers and workers on
    several machines compare heartbeats and queue times on one clock whatever their own clocks say; this process'
    clock on SQLite, whose processes share one machine.

    Returns:
        A timezone-aware UTC time (on PostgreSQL, the start of the session's transaction).
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.now())).astimezone(timezone.utc)
    return datetime.now(timezone.utc)
