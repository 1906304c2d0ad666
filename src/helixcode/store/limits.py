"""The fleet's shared LLM limits (``helixcode.llm.limits.SharedLimits``), kept in the database.

An acquisition is one short transaction: lock the model's ``llm_limits`` row (``FOR UPDATE`` on
PostgreSQL; SQLite's writes are serialised by ``BEGIN IMMEDIATE``), refuse while a 429 or a downed
provider keeps the fleet away, drop the requests older than the window, count the rest, and either
insert this request (a slot) or say when the oldest request that stands in the way leaves the window.
All times come from the database clock, so hosts whose clocks drift still agree.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.llm.limits import Admission, Quota
from helixcode.store.base import StoreBase
from helixcode.store.tables import llm_limits, llm_requests

__all__ = ["LimitOps"]

#: The provider-wide row of ``llm_limits`` (``down_until``: a worker's breaker opened on it).
PROVIDER_ROW = "*"


class LimitOps(StoreBase):
    """Requests and tokens per window, 429 cool-downs and downed providers, shared by every worker."""

    async def acquire(self, provider: str, model: str, quota: Quota, *, tokens: int) -> Admission:
        async with self._write() as conn:
            now = await self._now(conn)
            state = await self._lock_row(conn, provider, model)
            down = await self._down_until(conn, provider)
            if down is not None and down > now:
                return Admission(down - now, down=True, why=f"{provider} is down for the fleet")
            if state["blocked_until"] is not None and state["blocked_until"] > now:
                return Admission(state["blocked_until"] - now, why="a 429 keeps the fleet away")
            if not quota.limited:
                return Admission()
            return await self._take_slot(conn, provider, model, quota, tokens, now)

    async def _take_slot(
        self, conn: AsyncConnection, provider: str, model: str, quota: Quota, tokens: int, now: float
    ) -> Admission:
        mine = sa.and_(llm_requests.c.provider == provider, llm_requests.c.model == model)
        await conn.execute(llm_requests.delete().where(mine, llm_requests.c.at <= now - quota.window))
        recent = (
            await conn.execute(
                sa.select(llm_requests.c.at, llm_requests.c.tokens).where(mine).order_by(llm_requests.c.at)
            )
        ).all()
        wait = 0.0
        if quota.rpm and len(recent) >= quota.rpm:  # the oldest that must leave for one more to fit
            wait = recent[len(recent) - quota.rpm].at + quota.window - now
        if quota.tpm:
            over = sum(r.tokens for r in recent) + min(tokens, quota.tpm) - quota.tpm
            for row in recent:
                if over <= 0:
                    break
                over -= row.tokens
                wait = max(wait, row.at + quota.window - now)
        if wait > 0:
            return Admission(
                wait, why=f"{provider}/{model}: the fleet's {quota.rpm or '-'} rpm / {quota.tpm or '-'} tpm"
            )
        ticket = (
            await conn.execute(
                llm_requests.insert()
                .values(provider=provider, model=model, at=now, tokens=tokens)
                .returning(llm_requests.c.id)
            )
        ).scalar_one()
        return Admission(ticket=int(ticket))

    async def _lock_row(self, conn: AsyncConnection, provider: str, model: str) -> sa.RowMapping:
        insert: Any = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(llm_limits)
        await conn.execute(insert.values(provider=provider, model=model).on_conflict_do_nothing())
        query = sa.select(llm_limits).where(llm_limits.c.provider == provider, llm_limits.c.model == model)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        return (await conn.execute(query)).mappings().one()

    @staticmethod
    async def _down_until(conn: AsyncConnection, provider: str) -> float | None:
        query = sa.select(llm_limits.c.down_until).where(
            llm_limits.c.provider == provider, llm_limits.c.model == PROVIDER_ROW
        )
        value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else float(value)

    async def settle(self, ticket: int, tokens: int) -> None:
        async with self._write() as conn:
            await conn.execute(llm_requests.update().where(llm_requests.c.id == ticket).values(tokens=tokens))

    async def block(self, provider: str, model: str, seconds: float) -> None:
        await self._hold(provider, model, "blocked_until", seconds)

    async def mark_down(self, provider: str, seconds: float) -> None:
        await self._hold(provider, PROVIDER_ROW, "down_until", seconds)

    async def _hold(self, provider: str, model: str, column: str, seconds: float) -> None:
        """Set ``column`` to now + ``seconds`` unless it already reaches further."""
        async with self._write() as conn:
            now = await self._now(conn)
            await self._lock_row(conn, provider, model)
            col = llm_limits.c[column]
            await conn.execute(
                llm_limits.update()
                .where(llm_limits.c.provider == provider, llm_limits.c.model == model)
                .values({column: sa.case((col > now + seconds, col), else_=now + seconds)})
            )
