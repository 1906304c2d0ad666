"""Functions that Python tasks (``run: {python: "tests.python_tasks:NAME"}``) call in the tests."""

from __future__ import annotations

from typing import Any

from helixcode.agent.executors import PythonContext
from helixcode.errors import TaskFailed


def add(a: int, b: int) -> int:
    return a + b


async def count(n: int, ctx: PythonContext, crash_at: int | None = None) -> dict[str, Any]:
    """Count to ``n``, checkpointing each step; the first attempt crashes after ``crash_at`` steps."""
    start = (ctx.checkpoint or {}).get("done", 0)
    for i in range(start, n):
        await ctx.save_checkpoint({"done": i + 1})
        await ctx.report_progress((i + 1) / n, f"{i + 1} of {n}")
        if ctx.attempt == 1 and i + 1 == crash_at:
            raise RuntimeError(f"crashed after {crash_at}")
    return {"counted": n, "started_at": start, "attempt": ctx.attempt, "task": ctx.task_key}


def count_sync(n: int, ctx: PythonContext, crash_at: int | None = None) -> dict[str, Any]:
    """``count`` as a plain function (run in a thread), through the context's ``_sync`` twins."""
    start = (ctx.checkpoint or {}).get("done", 0)
    for i in range(start, n):
        ctx.save_checkpoint_sync({"done": i + 1})
        ctx.report_progress_sync((i + 1) / n, f"{i + 1} of {n}")
        if ctx.attempt == 1 and i + 1 == crash_at:
            raise RuntimeError(f"crashed after {crash_at}")
    return {"counted": n, "started_at": start, "attempt": ctx.attempt, "items": ctx.items}


def broken(message: str) -> None:
    raise ValueError(message)


def give_up() -> None:
    raise TaskFailed("no point in retrying", retryable=False)


def not_json() -> dict[str, Any]:
    return {"fine": [1, 2], "not": {3, 4}}


async def misuses_sync(ctx: PythonContext) -> None:
    ctx.save_checkpoint_sync({"from": "the event loop"})


class Tools:
    @staticmethod
    def shout(word: str) -> str:
        return word.upper()


NOT_CALLABLE = 42
