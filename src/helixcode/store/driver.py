"""The hottest statements on PostgreSQL, run on psycopg directly rather than through SQLAlchemy's
execution layer.

A worker's claim and its completions are a handful of statements built once (``StoreBase._prepared``)
and run thousands of times a second across a fleet. Through SQLAlchemy each execution paid about 75 us
of client CPU for its execution context, result set-up and row mapping (measured: 163 us per trivial
statement through ``AsyncConnection.execute``, 87 us through the driver), and psycopg re-parsed the
fused completion-and-claim statement on every call because its text is longer than the 4 KiB psycopg
caches conversions up to. Here the statement is compiled once, with PostgreSQL's own ``$n`` parameters,
and run on the connection's psycopg ``AsyncRawCursor``, which sends it as is: no conversion at all.

SQLAlchemy still owns the connection: it is checked out of the engine's pool as usual, and a
connection that fails (or is interrupted) mid-statement is invalidated there, so the pool never hands
it out again. Driver errors become the store's errors as ``base._translate`` makes them for
SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.errors import DatabaseUnavailable, StoreError

__all__ = ["DriverStatement", "fetch_rows"]


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled for the driver: its SQL with ``$n`` parameters and, for each, its name,
    the value the statement itself binds (used when the call does not give one) and SQLAlchemy's
    processing for its type (JSON becomes psycopg's ``Jsonb``)."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def compile(cls, statement: sa.Executable, dialect: sa.Dialect) -> DriverStatement:
        numbered: Any = type(dialect)(paramstyle="numeric_dollar")  # type: ignore[call-arg]
        compiled = statement.compile(dialect=numbered)  # type: ignore[attr-defined]
        if "__[POSTCOMPILE_" in compiled.string:  # an expanding IN, or a value rendered per execution
            raise ValueError("a driver statement's text must not change per execution")
        names = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        )
        return cls(compiled.string, names, dict(compiled.params), processors)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        values = (params[n] if n in params else self.defaults[n] for n in self.names)
        return [v if p is None else p(v) for v, p in zip(values, self.processors, strict=True)]


async def fetch_rows(
    conn: AsyncConnection, statement: DriverStatement, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run ``statement`` on ``conn``'s driver connection (in autocommit) and return its rows as dicts."""
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    try:
        async with psycopg.AsyncRawCursor(driver, row_factory=dict_row) as cursor:
            await cursor.execute(statement.sql, statement.arguments(params))
            return await cursor.fetchall() if cursor.description else []
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or driver.broken:
            await asyncio.shield(conn.invalidate())
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        raise StoreError(f"database error: {exc}") from exc
    except BaseException:
        # Interrupted (cancelled) with the statement still running: the connection is in no state to
        # be reused, and the pool must not hand it out again.
        if driver.pgconn.transaction_status == TransactionStatus.ACTIVE:
            await asyncio.shield(conn.invalidate())
        raise
