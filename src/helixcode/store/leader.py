"""Leader election for the reaper: at most one holder at a time across processes and machines.

Leadership is a lease: a row in ``locks`` with an expiry (database clock) that the holder renews
every cycle; another process takes over once it has expired. The same on SQLite and PostgreSQL.

PostgreSQL used to hold a session advisory lock on a connection kept for the purpose. That had two
faults: the connection sat idle in a transaction for the leader's whole life (so
``idle_in_transaction_session_timeout`` killed it and PgBouncer's transaction mode pinned it), and a
leader that was frozen (SIGSTOP, a VM paused, a debugger) kept its connection and so its lock: no
other worker reaped, and the frozen leader's expired leases were never requeued. A lease expires by
itself, whatever state its holder is in; the row is written once per cycle by the leader and read
(not written) by the others while it is live.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

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
        self._held = False

    async def acquire(self) -> bool:
        try:
            if not self._held and await self._held_by_another():
                return False
            self._held = await self._take()
        except (sa.exc.DBAPIError, OSError):
            self._held = False
        return self._held

    async def _held_by_another(self) -> bool:
        """A read, so that standing by writes nothing while a live leader holds the lease."""
        query = sa.select(locks.c.owner).where(
            locks.c.name == self.name, locks.c.owner != self.owner, locks.c.expires_at >= db_now()
        )
        async with self.engine.connect() as conn:
            found = (await conn.execute(query)).first() is not None
            await conn.rollback()
        return found

    async def _take(self) -> bool:
        """Take or renew the lease: an upsert that wins only when the row is ours or has expired."""
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(locks)
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
        """Give the lease up at once (a clean stop), so a successor need not wait for it to expire."""
        with contextlib.suppress(sa.exc.DBAPIError, OSError):
            async with self.engine.execution_options(helix_write=True).begin() as conn:
                await conn.execute(
                    locks.delete().where(locks.c.name == self.name, locks.c.owner == self.owner)
                )
        self._held = False
