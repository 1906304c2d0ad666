"""Engines for both databases, with the dialect details kept here.

SQLite: WAL so readers never block the writer, a busy timeout so writers queue instead of failing, and
the driver's own transaction handling turned off so that write transactions start with
``BEGIN IMMEDIATE`` (taking the write lock up front avoids the deadlock of two readers upgrading at
once). This is SQLAlchemy's documented recipe for pysqlite/aiosqlite.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic_core import from_json
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from helixcode.config import DatabaseSettings
from helixcode.errors import ConfigError

__all__ = [
    "WRITE",
    "application_name",
    "create_engine",
    "db_now",
    "id_list",
    "is_postgres",
    "is_sqlite",
    "sqlite_path",
    "transactional",
]

log = logging.getLogger(__name__)

#: Execution option that marks a connection's transactions as writes (``BEGIN IMMEDIATE`` on SQLite).
WRITE = "helix_write"


class db_now(FunctionElement[float]):  # noqa: N801 - reads like the SQL function it is
    """The database clock in epoch seconds with sub-second resolution (hosts' clocks drift)."""

    type = sa.Double()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _now_pg(element: db_now, compiler: Any, **kw: Any) -> str:
    return "extract(epoch from clock_timestamp())::float8"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


class id_list(FunctionElement[str]):  # noqa: N801 - reads like the SQL function it is
    """An aggregate: the ids of a group as comma-separated text (``string_agg`` / ``group_concat``),
    written with no bound separator, so that the statement's text is the same on every execution."""

    type = sa.String()
    inherit_cache = True


@compiles(id_list, "postgresql")
def _id_list_pg(element: id_list, compiler: Any, **kw: Any) -> str:
    return f"string_agg(CAST({compiler.process(element.clauses, **kw)} AS TEXT), ',')"


@compiles(id_list, "sqlite")
def _id_list_sqlite(element: id_list, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for an in-memory database."""
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def _normalise(url: str) -> str:
    parsed = make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        if driver != "aiosqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        if driver != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
    else:
        raise ConfigError(f"database.url: unsupported database '{backend}' (use sqlite or postgresql)")
    return parsed.render_as_string(hide_password=False)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An async engine for ``settings.url``; the SQLite file's folder is created if needed.

    PostgreSQL: one small pool per process (``pool_size``, default 1: the connection budget does not
    grow with a worker's concurrency) whose connections stay in autocommit. A single statement is then
    one round trip; a transaction is an explicit ``BEGIN`` ... ``COMMIT`` (``StoreBase._write``), so no
    connection ever sits idle in a transaction between uses, and a transaction-mode PgBouncer can hand
    the server connection on between statements.

    Both: JSON values are decoded by pydantic-core's parser (in Rust), not the json module: a claimed
    task comes back as one JSON value, and decoding it was the largest single cost of a claim in the
    worker (6 us per row with json, 2 us with pydantic-core)."""
    try:
        url = _normalise(settings.url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"database.url: not a database URL: {settings.url!r}") from exc
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=settings.echo,
            json_deserializer=from_json,
            connect_args={"timeout": settings.busy_timeout_ms / 1000},
        )
        _sqlite_events(engine, settings.busy_timeout_ms)
        return engine
    engine = create_async_engine(
        url,
        echo=settings.echo,
        json_deserializer=from_json,
        isolation_level="AUTOCOMMIT",
        # On check-in psycopg's rollback() looks at the server's transaction status and sends nothing
        # when idle, so this costs no round trip; it only ends a transaction an error path left open.
        pool_reset_on_return="rollback",
        pool_size=settings.pool_size,
        max_overflow=settings.pool_overflow,
        # psycopg prepares a statement server-side after five executions; PgBouncer before 1.21 in
        # transaction mode cannot follow that, so it can be turned off.
        connect_args={
            "application_name": application_name(),
            **({} if settings.prepared_statements else {"prepare_threshold": None}),
        },
        # No pre-ping: it costs a round trip per checkout on the hot path. A dropped connection fails its
        # statement as DatabaseUnavailable, SQLAlchemy discards the pool, and the caller retries.
    )
    _postgres_events(engine)
    return engine


def application_name() -> str:
    """How this process's connections show in ``pg_stat_activity``: an operator (and the connection
    budget's test) can tell whose they are."""
    return f"helixcode:{os.getpid()}"


def transactional(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` with real transactions for ``begin()`` (migrations, rare multi-statement work): on
    PostgreSQL the pool's connections are in autocommit, so this switches the one checked out."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="READ COMMITTED")
    return engine


def _postgres_events(engine: AsyncEngine) -> None:
    """A connection is checked for leftovers each time the pool hands it out, without a round trip: it
    must be idle, out of any transaction, and out of pipeline mode. One that is not is discarded and
    replaced (SQLAlchemy's ``DisconnectionError`` protocol for checkout).

    Why: psycopg (3.3) can leave a connection in libpq's pipeline mode when the task running an
    ``executemany`` is cancelled just as the pipeline is entered (and the cancellation may surface as
    an ``AssertionError`` from psycopg, which SQLAlchemy does not take for a lost connection). Every
    statement later sent on it reads the previous statement's result: a ``SELECT`` of the clock came
    back with no row, or with no result set at all. Workers cancel their helper tasks at every stop, so
    this happened in the test suite (measured: 6 poisoned connections in 600 cancelled
    ``executemany`` calls); the check costs under a microsecond per checkout."""
    from psycopg import pq

    idle = pq.TransactionStatus.IDLE

    @sa.event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pgconn = dbapi_connection.driver_connection.pgconn
        if pgconn.pipeline_status or pgconn.transaction_status != idle:
            why = (
                f"a pooled connection was left mid-command (transaction status "
                f"{pq.TransactionStatus(pgconn.transaction_status).name}, pipeline "
                f"{pq.PipelineStatus(pgconn.pipeline_status).name}): replaced"
            )
            log.warning("%s", why, extra={"action": "db.connection_replaced"})
            raise sa.exc.DisconnectionError(why)


def _sqlite_events(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
