"""The hot statements PostgreSQL runs past SQLAlchemy (``store.driver``): a connection that dies under
one is reported as the database being unavailable and replaced, a call cancelled mid-statement leaves
no connection the pool cannot reuse (nor does an ``executemany`` cancelled as it starts), and a plain
SQL error is a store error that names the fault."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from helixcode.errors import DatabaseUnavailable, StoreError
from helixcode.store.database import application_name
from helixcode.store.driver import DriverStatement, fetch_rows
from helixcode.store.store import Store
from tests.helpers import spec

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def _dsn(store: Store) -> str:
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def test_a_connection_killed_under_a_claim_is_unavailable_then_replaced(store: Store) -> None:
    job = await store.create_job(spec({"id": "a", "run": {"builtin": "noop"}}))
    assert await store.claim("w0", limit=0) == []  # the pool now holds an open connection
    async with await psycopg.AsyncConnection.connect(_dsn(store), autocommit=True) as admin:
        killed = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (application_name(),),
        )
        assert (await killed.fetchall()) == [(True,)]
    with pytest.raises(DatabaseUnavailable, match="database unavailable"):
        await store.claim("w1")
    claims = await store.claim("w1")  # on a new connection: the dead one was invalidated
    assert [(c.task.job_id, c.task.key) for c in claims] == [(job.id, "a")]


async def test_a_claim_cancelled_mid_statement_leaves_a_reusable_connection(store: Store) -> None:
    job = await store.create_job(spec({"id": "a", "run": {"builtin": "noop"}}))
    async with await psycopg.AsyncConnection.connect(_dsn(store)) as admin:
        await admin.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")  # the claim waits on it
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.claim("w1"), 0.5)
        await admin.rollback()
    claims = await asyncio.wait_for(store.claim("w1"), 5)
    assert [(c.task.job_id, c.task.key) for c in claims] == [(job.id, "a")]
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        assert driver.pgconn.transaction_status == TransactionStatus.IDLE


async def test_an_sql_error_is_a_store_error_naming_it(store: Store) -> None:
    broken = DriverStatement.compile(
        sa.select(sa.func.no_such_function(sa.bindparam("x", type_=sa.Integer()))), store.engine.dialect
    )
    async with store.engine.connect() as conn:
        with pytest.raises(StoreError, match="no_such_function") as caught:
            await fetch_rows(conn, broken, {"x": 1})
        assert not isinstance(caught.value, DatabaseUnavailable)
        # the connection is still good for the next statement
        assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1


async def _backend_pid(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())


async def test_a_connection_returned_in_pipeline_mode_is_replaced_at_checkout(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The state psycopg leaves behind when an ``executemany`` is cancelled as its pipeline starts: the
    next statement on that connection would read an earlier statement's result."""
    first = await _backend_pid(store)
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        driver.pgconn.enter_pipeline_mode()
    assert isinstance(await store.now(), float)  # one row, the clock
    assert await _backend_pid(store) != first  # on a new connection
    [replaced] = [r for r in caplog.records if getattr(r, "action", "") == "db.connection_replaced"]
    assert "pipeline ON" in replaced.getMessage()


@pytest.mark.parametrize("how", ["statement", "transaction"])
async def test_an_executemany_cancelled_as_its_pipeline_starts_never_spoils_the_pool(
    store: Store, how: str
) -> None:
    """A worker's stop cancels its heartbeat and reaper wherever they are. psycopg yields to the event
    loop as an ``executemany`` enters pipeline mode when the loop has been busy for 5 ms
    (``psycopg.waiting.MAX_BUSY_TIME``); a cancellation delivered there left the connection in
    pipeline mode (half the time, measured: 10 of 20), and the next statement on the pool (one
    connection) read no row or failed; and it came out of psycopg as an ``AssertionError``, so the
    cancelled task went on as if it had failed. Here the cancellation is queued just before that yield."""
    scratch = sa.Table("cancel_probe", sa.MetaData(), sa.Column("v", sa.Text))
    async with store.engine.begin() as conn:
        await conn.run_sync(scratch.create)
    outcomes: Counter[str] = Counter()

    async def write() -> None:
        async with store._statement() if how == "statement" else store._write() as conn:
            this = asyncio.current_task()
            assert this is not None
            asyncio.get_running_loop().call_soon(this.cancel)  # runs at the next yield to the loop
            time.sleep(0.006)  # noqa: ASYNC251 - the loop busy: psycopg yields as the pipeline starts
            await conn.execute(scratch.insert(), [{"v": "x" * 50}] * 20)

    try:
        for _ in range(20):
            try:
                await asyncio.create_task(write())
                outcomes["done"] += 1
            except BaseException as exc:
                outcomes[type(exc).__name__] += 1
            assert isinstance(await store.now(), float), outcomes  # one row, the clock
            async with store.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                assert raw.driver_connection is not None
                assert not raw.driver_connection.pgconn.pipeline_status
        assert outcomes == {"CancelledError": 20}  # each write cancelled mid-way, and said so
    finally:
        async with store.engine.begin() as conn:
            await conn.run_sync(scratch.drop)
