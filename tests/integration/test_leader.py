"""The reaper's leadership is a lease in the database: one leader, and a frozen one is replaced.

A leader that stops renewing (frozen by SIGSTOP, a paused VM) loses the lease after its TTL, whatever
its connections still hold, and a standby takes over; on waking, the old leader learns it no longer
leads. No connection stays in a transaction for it (the old PostgreSQL advisory lock did).
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from helixcode.store.leader import LeaderLock
from helixcode.store.store import Store
from helixcode.store.tables import locks


async def test_a_frozen_leader_is_replaced_after_its_ttl(store: Store) -> None:
    first = LeaderLock(store.engine, "reaper", "first", ttl=0.6)
    second = LeaderLock(store.engine, "reaper", "second", ttl=0.6)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.acquire()  # renews
    await asyncio.sleep(0.8)  # first is frozen: it renews nothing
    assert await second.acquire()
    assert not await first.acquire()  # it wakes up a follower
    async with store.engine.connect() as conn:
        owner = (await conn.execute(sa.select(locks.c.owner).where(locks.c.name == "reaper"))).scalar_one()
    assert owner == "second"


async def test_a_released_lease_is_taken_at_once(store: Store) -> None:
    first = LeaderLock(store.engine, "reaper", "first", ttl=30)
    second = LeaderLock(store.engine, "reaper", "second", ttl=30)
    assert await first.acquire()
    await first.release()
    assert await second.acquire()
