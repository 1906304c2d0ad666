"""What every part of the store shares: the engine, transactions, the clock, the event log.

Dialect differences (SQLite vs PostgreSQL) stay inside this package. Writes run in ``BEGIN IMMEDIATE``
transactions on SQLite; every time written comes from the database clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helixcode.config import Settings
from helixcode.domain.enums import TaskStatus
from helixcode.domain.notify import Notice, notices_from_events
from helixcode.errors import DatabaseUnavailable, StoreError
from helixcode.store.database import WRITE, create_engine, db_now
from helixcode.store.driver import DriverStatement, fetch_rows
from helixcode.store.tables import TERMINAL, events, tasks

__all__ = [
    "DONE",
    "EMPTY_JSONB",
    "READY_CHANNEL",
    "TERMINAL",
    "StoreBase",
    "const",
    "event",
    "status_is",
    "task_event",
    "unfinished",
]

_Stmt = TypeVar("_Stmt", bound=sa.Executable)

DONE = (TaskStatus.SUCCEEDED.value, TaskStatus.SKIPPED.value)


#: From this many rows, an insert goes through ``StoreBase._bulk_insert`` (a submission, an expansion).
BULK_ROWS = 256

#: The PostgreSQL channel idle workers LISTEN on, and the events that make a task claimable.
READY_CHANNEL = "helix_ready"
WAKING_EVENTS = frozenset({"ready", "requeued"})


def _translate(exc: sa.exc.DBAPIError | sa.exc.TimeoutError) -> StoreError:
    """Connection trouble is worth retrying; anything else is a real error. A pool that gave no
    connection in time (the one in use hangs on a server that does not answer) is trouble too."""
    if isinstance(exc, sa.exc.TimeoutError):
        return DatabaseUnavailable(f"database unavailable: no connection free in time ({exc})")
    if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return DatabaseUnavailable(f"database unavailable: {exc.orig}")
    return StoreError(f"database error: {exc.orig}")


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """What a store call raises: the database's errors as the store's (``_translate``), and a
    cancellation as a cancellation. psycopg (3.3) can raise an ``AssertionError`` in place of the
    ``CancelledError`` that interrupted it (an ``executemany`` cancelled as its pipeline starts); a
    cancelled task must still end cancelled, or a worker's stop, and any ``asyncio.timeout`` around a
    store call, would take the interruption for a failure."""
    try:
        yield
    except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
        raise _translate(exc) from exc
    except AssertionError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from exc
        raise


async def _abandon(conn: AsyncConnection) -> None:
    """Roll back an explicit transaction that raised; a connection that cannot even do that (it
    dropped, or the task was cancelled mid-way) is discarded rather than returned to the pool."""
    try:
        await asyncio.shield(conn.exec_driver_sql("ROLLBACK"))
    except BaseException:
        await conn.invalidate()


def unfinished(status: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """``status NOT IN (<terminal states>)`` written into the SQL: a bound list would be expanded on
    every execution of a prepared hot-path statement, and only these constants match the predicate of
    the open-tasks index (``tables.tasks``)."""
    return status.not_in([sa.literal_column(f"'{s}'") for s in TERMINAL])


def const(value: str | float | None) -> sa.ColumnElement[Any]:
    """A constant written into the SQL instead of bound. In a hot-path statement every bound value is
    one more parameter to build, adapt and send on each execution, and longer text: psycopg caches
    its conversion of a statement only up to 4 KiB. Only for values fixed in code, never for input."""
    if value is None:
        return sa.null()
    if isinstance(value, str):
        return sa.literal_column("'" + value.replace("'", "''") + "'", sa.String())
    return sa.literal_column(repr(value), sa.Double() if isinstance(value, float) else sa.Integer())


#: ``'{}'::jsonb``, for PostgreSQL-only statements.
EMPTY_JSONB = sa.literal_column("'{}'::jsonb", postgresql.JSONB())


def status_is(status: TaskStatus) -> sa.ColumnElement[bool]:
    """``tasks.status = '<status>'`` with the value written into the SQL, not bound: a partial index
    (see ``tables.tasks``) serves a query only when its condition matches the index's as a constant."""
    return tasks.c.status == const(status.value)


def event(
    job_id: str,
    kind: str,
    now: float,
    *,
    task_id: int | None = None,
    attempt: int | None = None,
    worker_id: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """One event row; ``details`` is free-form JSON."""
    return {
        "job_id": job_id,
        "task_id": task_id,
        "kind": kind,
        "details": details,
        "attempt": attempt,
        "worker_id": worker_id,
        "created_at": now,
    }


def task_event(row: Mapping[Any, Any], kind: str, now: float, **details: Any) -> dict[str, Any]:
    """The event of an attempt, from its task row as a fenced write or a claim returns it (``id``,
    ``job_id``, ``attempts``, ``lease_owner``): the one place that says which columns name the attempt
    and its worker, so every writer logs them alike."""
    return event(
        row["job_id"],
        kind,
        now,
        task_id=row["id"],
        attempt=row["attempts"],
        worker_id=row["lease_owner"],
        **details,
    )


class StoreBase:
    """Connection handling shared by the store's parts; use ``Store``, which combines them."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._writer = engine.execution_options(**{WRITE: True})
        # PostgreSQL's pool is in autocommit (``database.create_engine``): transactions are explicit.
        self._explicit_tx = engine.dialect.name == "postgresql"
        #: Per job: its workdir and trace context (see ``ClaimOps._job_facts``).
        self._job_cache: dict[str, tuple[str | None, str | None]] = {}
        # SQLite allows one writer: queue this process's writers here instead of in SQLite's busy handler,
        # which sleeps in growing steps. Other processes still meet the busy timeout.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._statements: dict[Hashable, sa.Executable] = {}
        self._driver_statements: dict[Hashable, DriverStatement] = {}
        # Tasks claimed through this store that have no split parent: on PostgreSQL their success, with
        # the release of their dependents, is one statement, so it skips the transaction round trips.
        self._parentless: set[int] = set()

    @classmethod
    async def open(cls, settings: Settings, *, upgrade: bool = True) -> Self:
        """Connect, and bring the schema up to date unless told not to."""
        store = cls(create_engine(settings.database), settings)
        if upgrade:
            try:
                await store.upgrade()
            except BaseException:
                await store.aclose()
                raise
        return store

    async def aclose(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def upgrade(self) -> None:
        """Apply pending migrations; cheap when the schema is current."""
        # Lazy: Alembic is slow to import, and a store opened with upgrade=False (`helix progress`
        # inside a shell task) never migrates.
        from helixcode.store import migrate

        try:
            if await migrate.current_revision(self.engine) == migrate.head_revision():
                return
            await migrate.upgrade(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate the database: {exc}") from exc

    def _prepared(self, key: Hashable, build: Callable[[], _Stmt]) -> _Stmt:
        """A hot-path statement built once per store, its values left as bind parameters. Building a
        SQLAlchemy statement and its cache key costs more Python time than the database takes to run
        it; a reused statement object keeps its memoised cache key, so only execution is paid."""
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._statements[key] = build()
        return stmt  # type: ignore[return-value]

    async def _fetch(
        self,
        conn: AsyncConnection,
        key: Hashable,
        build: Callable[[], sa.Executable],
        params: Mapping[str, Any],
    ) -> Sequence[Mapping[Any, Any]]:
        """Run a hot-path statement (``_prepared``'s ``key``) on ``conn`` and return its rows as
        mappings: on PostgreSQL past SQLAlchemy's execution layer (``store.driver``: half the client
        CPU of a statement), on SQLite through it."""
        if self.dialect != "postgresql":
            return (await conn.execute(self._prepared(key, build), params)).mappings().all()
        compiled = self._driver_statements.get(key)
        if compiled is None:
            compiled = DriverStatement.compile(self._prepared(key, build), self.engine.dialect)
            self._driver_statements[key] = compiled
        return await fetch_rows(conn, compiled, params)

    # -- transactions ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On PostgreSQL each statement runs on its own (autocommit, READ
        COMMITTED as before: a transaction around reads would add two round trips and no consistency)."""
        with _store_errors():
            async with self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL an explicit ``BEGIN`` on the
        pool's autocommit connection, committed when the block ends and rolled back when it raises."""
        async with self._write_lock or contextlib.nullcontext():
            with _store_errors():
                if not self._explicit_tx:
                    async with self._writer.begin() as conn:
                        yield conn
                    return
                async with self.engine.connect() as conn:
                    await conn.exec_driver_sql("BEGIN")
                    try:
                        yield conn
                    except BaseException:
                        await _abandon(conn)
                        raise
                    await conn.exec_driver_sql("COMMIT")

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[AsyncConnection]:
        """For a write that is one statement (data-modifying CTEs included), so atomic on its own. On
        PostgreSQL it runs in autocommit: no BEGIN and COMMIT round trips on the hot path. On SQLite it
        is an ordinary write transaction (the ``BEGIN IMMEDIATE`` lock is what orders writers)."""
        if not self._explicit_tx:
            async with self._write() as conn:
                yield conn
            return
        with _store_errors():
            async with self.engine.connect() as conn:
                yield conn

    @staticmethod
    async def _now(conn: AsyncConnection) -> float:
        return float((await conn.execute(sa.select(db_now()))).scalar_one())

    async def now(self) -> float:
        """The database clock, in epoch seconds."""
        async with self._read() as conn:
            return await self._now(conn)

    async def _events(self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows built by ``event(...)`` to the log; on PostgreSQL, wake idle workers when a task
        became claimable (the notification is delivered at commit, so a woken worker sees the task).
        Job outcomes and pauses among them queue their notifications here, in the same transaction:
        this is the one place job-level events are written (the one-statement hot paths write only
        task events)."""
        if not rows:
            return
        if len(rows) >= BULK_ROWS:
            await self._bulk_insert(conn, events, rows)
        else:
            await conn.execute(events.insert(), list(rows))
        if self.dialect == "postgresql" and (woken := sum(r["kind"] in WAKING_EVENTS for r in rows)):
            # The payload says how many tasks became claimable: a process wakes that many of its idle
            # workers, not all (``worker.wakeup.WakeHub``).
            await conn.execute(sa.select(sa.func.pg_notify(READY_CHANNEL, str(woken))))
        if self.settings.notify and (notices := notices_from_events(rows)):
            await self._notify(conn, notices)

    async def _bulk_insert(
        self, conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Insert many rows (all with the same keys) with one driver ``executemany``, past SQLAlchemy's
        per-row parameter processing, which costs more than the database for a large graph: 100,000
        tasks spent 1.5 s building parameters and 2 s encoding their JSON with the json module."""
        if not rows:
            return
        names = list(rows[0])
        json_at = [i for i, name in enumerate(names) if isinstance(table.c[name].type, sa.JSON)]
        pg = self.dialect == "postgresql"
        marks = ", ".join(
            ("CAST(%s AS JSONB)" if i in json_at else "%s") if pg else "?" for i in range(len(names))
        )
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
        pick = operator.itemgetter(*names)
        data: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(pick(row)) if len(names) > 1 else [row[names[0]]]
            for i in json_at:
                if values[i] is not None:
                    values[i] = to_json(values[i]).decode()  # pydantic-core's encoder, in Rust
            data.append(tuple(values))
        await conn.exec_driver_sql(sql, data)

    async def _notify(self, conn: AsyncConnection, notices: Sequence[Notice]) -> None:
        """Queue notifications of these notices in the caller's transaction: ``store.outbox`` does
        (only when ``[notify.*]`` targets are configured)."""
