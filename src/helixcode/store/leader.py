"""Leader election for the reaper: exactly one holder at a time across processes and machines.

PostgreSQL: a session-level advisory lock on a connection kept for the purpose; if the holder dies its
connection closes and the lock is free at once. SQLite: a row in ``locks`` with an expiry the holder
renews; another process takes over once it has expired.
"""

from __future__ import annotations

import contextlib
import zlib

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from helixcode.store.database import db_now
from helixcode.store.tables import locks

__all__ = ["LeaderLock"]


class LeaderLock:
    """``await lock.acquire()`` is True while this owner leads; call it every cycle (it renews)."""

    def __init__(self, engine: AsyncEngine, name: str, owner: str, ttl: float) -> None:
        self.engine = engine
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self._conn: AsyncConnection | None = None
        self._key = zlib.crc32(f"helix:{name}".encode())

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def acquire(self) -> bool:
        try:
            return await (self._acquire_pg() if self._postgres else self._acquire_row())
        except (sa.exc.DBAPIError, OSError):
            await self._drop_connection()
            return False

    async def _acquire_pg(self) -> bool:
        if self._conn is not None:
            # Still connected means still holding; a cheap round trip proves the connection lives.
            await self._conn.execute(sa.text("SELECT 1"))
            return True
        conn = await self.engine.connect()
        got = (await conn.execute(sa.select(sa.func.pg_try_advisory_lock(self._key)))).scalar_one()
        await conn.commit()
        if got:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def _acquire_row(self) -> bool:
        insert = (sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert)(locks)
        stmt = (
            insert.values(name=self.name, owner=self.owner, expires_at=db_now() + self.ttl)
            .on_conflict_do_update(
                index_elements=[locks.c.name],
                set_={"owner": self.owner, "expires_at": db_now() + self.ttl},
                where=sa.or_(locks.c.owner == self.owner, locks.c.expires_at < db_now()),
            )
            .returning(locks.c.owner)
        )
        async with self.engine.execution_options(helix_write=True).begin() as conn:
            row = (await conn.execute(stmt)).first()
        return row is not None and row[0] == self.owner

    async def release(self) -> None:
        with contextlib.suppress(sa.exc.DBAPIError, OSError):
            if self._postgres:
                if self._conn is not None:
                    await self._conn.execute(sa.select(sa.func.pg_advisory_unlock(self._key)))
                    await self._conn.commit()
            else:
                async with self.engine.execution_options(helix_write=True).begin() as conn:
                    await conn.execute(
                        locks.delete().where(locks.c.name == self.name, locks.c.owner == self.owner)
                    )
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError, OSError):
                await self._conn.close()
            self._conn = None
