"""The fleet's shared LLM limits (``helixcode.llm.limits.SharedLimits``), kept in the database.

An acquisition is one short transaction. Its first statement locks the model's ``llm_limits`` row
(an upsert: PostgreSQL holds the row lock to the end of the transaction; SQLite's writes are serialised
by ``BEGIN IMMEDIATE``) and reads the database clock and the row's 429 cool-down. Its second inserts the
request into the window's log only if the provider is not marked down and the requests and tokens of
the window leave room for it. Only when that insert is refused does a third statement find out why and
how long to wait (until the oldest request in the way leaves the window). All times come from the
database clock, so hosts whose clocks drift still agree.

The state is soft: losing the last slots in a crash only lets a few requests through early. So on
PostgreSQL these transactions commit without waiting for the WAL flush (``synchronous_commit = off``,
set for them alone by their first statement), and ``settle`` only notes the tokens a request used,
written when they could change a verdict: a model call costs one short transaction of two statements,
not two durable commits.
Requests older than the window are deleted now and then by an acquisition (one in ``PRUNE_EVERY``).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.store.base import StoreBase
from helixcode.store.database import db_now
from helixcode.store.tables import llm_limits, llm_requests

if TYPE_CHECKING:
    from helixcode.llm.limits import Admission, Quota

__all__ = ["LimitOps"]

#: The provider-wide row of ``llm_limits`` (``down_until``: a worker's breaker opened on it).
PROVIDER_ROW = "*"
#: One acquisition in this many also deletes the requests that have left the window.
PRUNE_EVERY = 50
_acquisitions = itertools.count()


class LimitOps(StoreBase):
    """Requests and tokens per window, 429 cool-downs and downed providers, shared by every worker."""

    _pending_settles: dict[int, int]

    async def acquire(self, provider: str, model: str, quota: Quota, *, tokens: int) -> Admission:
        # Lazy: importing helixcode.llm loads the whole LLM layer, which commands that open the store
        # without making model calls (`helix progress` in a shell task) should not pay for.
        from helixcode.llm.limits import Admission

        async with self._write() as conn:
            blocked, now = await self._lock_row(conn, provider, model)
            if blocked is not None and blocked > now:
                down = await self._down_until(conn, provider)
                if down is not None and down > now:
                    return Admission(down - now, down=True, why=f"{provider} is down for the fleet")
                return Admission(blocked - now, why="a 429 keeps the fleet away")
            if next(_acquisitions) % PRUNE_EVERY == 0:
                await conn.execute(
                    llm_requests.delete().where(
                        _window(provider, model), llm_requests.c.at <= now - max(quota.window, 60.0)
                    )
                )
            ticket = await self._insert_if_room(conn, provider, model, quota, tokens, now)
            if ticket is None and quota.tpm and self._settled():
                # Estimates count more tokens than most calls use: with the real figures, it may fit.
                await self._apply_settled(conn)
                ticket = await self._insert_if_room(conn, provider, model, quota, tokens, now)
            if ticket is not None:
                return Admission(ticket=ticket)
            return await self._refusal(conn, provider, model, quota, tokens, now)

    async def _lock_row(self, conn: AsyncConnection, provider: str, model: str) -> tuple[float | None, float]:
        """Lock the model's row (created the first time); its 429 cool-down and the database clock.
        On PostgreSQL the same statement makes this transaction's commit asynchronous (see above)."""
        extra: list[sa.ColumnElement[Any]] = []
        if self.dialect == "postgresql":
            extra.append(sa.func.set_config("synchronous_commit", "off", True))
        query = sa.select(llm_limits.c.blocked_until, db_now(), *extra).where(
            llm_limits.c.provider == provider, llm_limits.c.model == model
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(of=llm_limits)
        found = (await conn.execute(query)).first()
        if found is None:
            insert: Any = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(llm_limits)
            await conn.execute(insert.values(provider=provider, model=model).on_conflict_do_nothing())
            found = (await conn.execute(query)).one()
        return (None if found[0] is None else float(found[0])), float(found[1])

    async def _insert_if_room(
        self, conn: AsyncConnection, provider: str, model: str, quota: Quota, tokens: int, now: float
    ) -> int | None:
        """The request's slot, when nothing stands in the way (one statement); else None."""
        recent = sa.and_(_window(provider, model), llm_requests.c.at > now - quota.window)
        room: list[sa.ColumnElement[bool]] = [
            ~sa.exists().where(
                llm_limits.c.provider == provider,
                llm_limits.c.model == PROVIDER_ROW,
                llm_limits.c.down_until > now,
            )
        ]
        if quota.rpm:
            count = sa.select(sa.func.count()).select_from(llm_requests).where(recent).scalar_subquery()
            room.append(count < quota.rpm)
        if quota.tpm:
            used = sa.select(sa.func.coalesce(sa.func.sum(llm_requests.c.tokens), 0)).where(recent)
            budget = sa.literal(quota.tpm - min(tokens, quota.tpm), sa.BigInteger)
            room.append(used.scalar_subquery() <= budget)
        row = sa.select(
            sa.literal(provider), sa.literal(model), sa.literal(now, sa.Double), sa.literal(tokens)
        ).where(*room)
        stmt = (
            llm_requests.insert()
            .from_select(["provider", "model", "at", "tokens"], row)
            .returning(llm_requests.c.id)
        )
        found = (await conn.execute(stmt)).scalar_one_or_none()
        return None if found is None else int(found)

    async def _refusal(
        self, conn: AsyncConnection, provider: str, model: str, quota: Quota, tokens: int, now: float
    ) -> Admission:
        """Why a request may not go, and for how long."""
        from helixcode.llm.limits import Admission  # lazy, as in acquire

        down = await self._down_until(conn, provider)
        if down is not None and down > now:
            return Admission(down - now, down=True, why=f"{provider} is down for the fleet")
        recent = (
            await conn.execute(
                sa.select(llm_requests.c.at, llm_requests.c.tokens)
                .where(_window(provider, model), llm_requests.c.at > now - quota.window)
                .order_by(llm_requests.c.at)
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
        limit = f"{quota.rpm or '-'} requests / {quota.tpm or '-'} tokens per {quota.window:g}s"
        return Admission(max(wait, 0.001), why=f"{provider}/{model}: the fleet's {limit}")

    @staticmethod
    async def _down_until(conn: AsyncConnection, provider: str) -> float | None:
        query = sa.select(llm_limits.c.down_until).where(
            llm_limits.c.provider == provider, llm_limits.c.model == PROVIDER_ROW
        )
        value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else float(value)

    # -- what a call reports ----------------------------------------------------------------------

    async def settle(self, ticket: int, tokens: int) -> None:
        """Note the tokens a request really used. They are written when they matter: before a refusal
        for tokens (the estimate, which counts the reply's whole limit, is rarely smaller), or by
        ``flush_settled``."""
        self._settled()[ticket] = tokens

    async def flush_settled(self) -> None:
        async with self._write() as conn:
            await self._apply_settled(conn)

    def _settled(self) -> dict[int, int]:
        if not hasattr(self, "_pending_settles"):
            self._pending_settles = {}
        return self._pending_settles

    async def _apply_settled(self, conn: AsyncConnection) -> None:
        pending = self._settled()
        if not pending:
            return
        batch = [{"ticket": k, "used": v} for k, v in pending.items()]
        pending.clear()
        await conn.execute(
            llm_requests.update()
            .where(llm_requests.c.id == sa.bindparam("ticket"))
            .values(tokens=sa.bindparam("used")),
            batch,
        )

    async def block(self, provider: str, model: str, seconds: float) -> None:
        await self._hold(provider, model, "blocked_until", seconds)

    async def mark_down(self, provider: str, seconds: float) -> None:
        """The provider-wide row is down; the model rows' ``blocked_until`` is raised too, so an
        acquisition finds it with the lock it takes anyway (the fast path reads nothing else)."""
        await self._hold(provider, PROVIDER_ROW, "down_until", seconds)
        async with self._write() as conn:
            until = sa.select(llm_limits.c.down_until).where(
                llm_limits.c.provider == provider, llm_limits.c.model == PROVIDER_ROW
            )
            col = llm_limits.c.blocked_until
            await conn.execute(
                llm_limits.update()
                .where(llm_limits.c.provider == provider, llm_limits.c.model != PROVIDER_ROW)
                .values(
                    blocked_until=sa.case((col > until.scalar_subquery(), col), else_=until.scalar_subquery())
                )
            )

    async def _hold(self, provider: str, model: str, column: str, seconds: float) -> None:
        """Set ``column`` to now + ``seconds`` unless it already reaches further."""
        async with self._write() as conn:
            _, now = await self._lock_row(conn, provider, model)
            col = llm_limits.c[column]
            await conn.execute(
                llm_limits.update()
                .where(llm_limits.c.provider == provider, llm_limits.c.model == model)
                .values({column: sa.case((col > now + seconds, col), else_=now + seconds)})
            )


def _window(provider: str, model: str) -> sa.ColumnElement[bool]:
    return sa.and_(llm_requests.c.provider == provider, llm_requests.c.model == model)
