"""Model calls recorded per task attempt (``helixcode.llm.usage.CallSink``), and their sums.

One insert per finished call (a model call takes far longer than the insert); read back as tokens and
USD per task and per job for ``helix status``, ``helix tasks`` and the API.

Budgets: a job may carry ``max_cost`` (USD) and ``max_tokens``. The call that reaches one pauses the
job in the same transaction as its record, with a ``paused`` event naming the budget (like a critical
failure: a person decides); ``budget_spent`` then refuses every new call of the job (the worker hands
its task back, checkpointed) until ``resume_job(..., raise_cost=..., raise_tokens=...)`` lifts it. A
call already under way is never cut: the budget can be overrun by the calls in flight, no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import JobStatus
from helixcode.store.base import StoreBase, event
from helixcode.store.tables import jobs, llm_calls

if TYPE_CHECKING:  # only annotations: importing helixcode.llm would load the whole LLM layer
    from helixcode.llm.usage import CallContext

__all__ = ["UsageOps", "UsageTotals"]


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """What the calls of a task or a job used. ``cost_usd`` is None when no call had a known price;
    ``unpriced`` counts the calls whose price is unknown (so a total is known to be a lower bound)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    unpriced: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "unpriced_calls": self.unpriced,
        }


class UsageOps(StoreBase):
    async def record_call(
        self,
        context: CallContext,
        *,
        provider: str,
        model: str,
        ok: bool,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        latency_s: float,
        first_token_s: float | None,
        error: str | None,
        cost_usd: float | None,
    ) -> None:
        async with self._write() as conn:
            now = await self._now(conn)
            await conn.execute(
                llm_calls.insert().values(
                    job_id=context.job_id,
                    task_id=context.task_id,
                    attempt=context.attempt,
                    worker_id=context.worker_id,
                    provider=provider,
                    model=model,
                    ok=ok,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cached_tokens=cached_tokens,
                    latency_s=latency_s,
                    first_token_s=first_token_s,
                    cost_usd=cost_usd,
                    error=error[:2000] if error else None,
                    created_at=now,
                )
            )
            if context.job_id is not None:
                await self._pause_for_budget(conn, context.job_id, now)

    async def record_attempt_usage(self, context: CallContext) -> None:
        """A ``model_usage`` event with what the attempt's calls used (``context.tally``), so that the
        event log and its followers see tokens and cost per attempt as they are spent."""
        tally = context.tally
        if context.job_id is None or tally is None or not tally.calls:
            return
        async with self._write() as conn:
            now = await self._now(conn)
            await self._events(
                conn,
                [
                    event(
                        context.job_id,
                        "model_usage",
                        now,
                        task_id=context.task_id,
                        attempt=context.attempt,
                        worker_id=context.worker_id,
                        calls=tally.calls,
                        tokens=tally.tokens,
                        cost_usd=tally.cost_usd,
                        unpriced_calls=tally.unpriced,
                    )
                ],
            )

    async def budget_spent(self, context: CallContext) -> str | None:
        if context.job_id is None:
            return None
        async with self._read() as conn:
            return await self._over_budget(conn, context.job_id)

    async def _over_budget(self, conn: AsyncConnection, job_id: str) -> str | None:
        job = (
            await conn.execute(sa.select(jobs.c.max_cost, jobs.c.max_tokens).where(jobs.c.id == job_id))
        ).first()
        if job is None or (job.max_cost is None and job.max_tokens is None):
            return None
        c = llm_calls.c
        spent = (
            await conn.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0),
                    sa.func.coalesce(sa.func.sum(c.prompt_tokens + c.completion_tokens), 0),
                ).where(c.job_id == job_id)
            )
        ).one()
        cost, tokens = float(spent[0]), int(spent[1])
        if job.max_cost is not None and cost >= job.max_cost:
            return f"budget reached: ${cost:.4f} of max_cost ${job.max_cost:g}"
        if job.max_tokens is not None and tokens >= job.max_tokens:
            return f"budget reached: {tokens:,} tokens of max_tokens {job.max_tokens:,}"
        return None

    async def _pause_for_budget(self, conn: AsyncConnection, job_id: str, now: float) -> None:
        reason = await self._over_budget(conn, job_id)
        if reason is None:
            return
        paused = await conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
            .values(status=JobStatus.PAUSED.value, pause_reason=reason, updated_at=now)
        )
        if paused.rowcount:
            await self._events(conn, [event(job_id, "paused", now, reason=reason, budget=True)])

    async def usage_by_task(self, job_id: str) -> dict[int, UsageTotals]:
        """Each task's model calls in ``job_id``, summed (tasks without calls are absent)."""
        rows = (await self._usage(job_id, by_task=True)).all()
        return {int(r.task_id): _totals(r) for r in rows if r.task_id is not None}

    async def job_usage(self, job_id: str) -> UsageTotals:
        row = (await self._usage(job_id, by_task=False)).first()
        return _totals(row) if row is not None else UsageTotals()

    async def _usage(self, job_id: str, *, by_task: bool) -> sa.Result[Any]:
        c = llm_calls.c
        columns = [
            sa.func.count().label("calls"),
            sa.func.coalesce(sa.func.sum(c.prompt_tokens), 0).label("prompt"),
            sa.func.coalesce(sa.func.sum(c.completion_tokens), 0).label("completion"),
            sa.func.coalesce(sa.func.sum(c.cached_tokens), 0).label("cached"),
            sa.func.sum(c.cost_usd).label("cost"),
            sa.func.count().filter(c.cost_usd.is_(None)).label("unpriced"),
        ]
        query = sa.select(*([c.task_id] if by_task else []), *columns).where(c.job_id == job_id)
        if by_task:
            query = query.group_by(c.task_id)
        async with self._read() as conn:
            return await conn.execute(query)


def _totals(row: sa.Row[Any]) -> UsageTotals:
    return UsageTotals(
        calls=int(row.calls),
        prompt_tokens=int(row.prompt),
        completion_tokens=int(row.completion),
        cached_tokens=int(row.cached),
        cost_usd=None if row.cost is None else float(row.cost),
        unpriced=int(row.unpriced),
    )
