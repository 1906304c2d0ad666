"""Built-in executors for tests, demos and benchmarks: ``noop``, ``sleep`` (checkpointed), ``fail``."""

from __future__ import annotations

import asyncio
from typing import Any

from helixcode.agent.executors.base import TaskContext
from helixcode.domain.runs import BuiltinRun
from helixcode.errors import TaskFailed

__all__ = ["BuiltinExecutor"]

#: ``sleep`` checkpoints this often (at most), so a resumed attempt redoes little; a sleep no longer
#: than this has nothing worth resuming and writes only its result.
SLEEP_STEP = 0.5


class BuiltinExecutor:
    async def execute(self, ctx: TaskContext) -> dict[str, Any]:
        run = ctx.run_as(BuiltinRun)
        if run.builtin == "noop":
            return {}
        if run.builtin == "sleep":
            return await self._sleep(ctx, run.seconds)
        limit = run.fail_attempts  # fail
        if limit is None or ctx.attempt <= limit:
            raise TaskFailed(f"failing on purpose (attempt {ctx.attempt})")
        return {"failed_first": limit}

    async def _sleep(self, ctx: TaskContext, seconds: float) -> dict[str, Any]:
        saved = ctx.checkpoint or {}
        done = float(saved.get("slept", 0.0)) if isinstance(saved, dict) else 0.0
        resumed_from = done
        step = SLEEP_STEP
        while seconds - done > 1e-9:
            chunk = min(step, seconds - done)
            await asyncio.sleep(chunk)
            done = min(seconds, done + chunk)
            if seconds - done > 1e-9:  # after the last chunk the result itself is the record
                await ctx.save_checkpoint("sleep", {"slept": round(done, 6)})
                await ctx.report_progress(done / seconds, f"slept {done:.1f}s of {seconds:.1f}s")
        return {"slept": seconds, "resumed_from": resumed_from}
