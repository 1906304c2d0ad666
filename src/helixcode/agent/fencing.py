"""Fencing for side effects outside the database: an attempt lands its work only while its lease holds.

The database refuses a write with a stale lease token; git cannot check one. So before the job branch
moves, the landing calls a fence (from the git thread) that renews the lease in the database through
the worker's event loop: a lease that is gone raises ``LandingRefused`` and nothing moves, and the
refusal is logged as a ``landing_refused`` event of the task. The fence runs even when the attempt's
asyncio task was cancelled meanwhile (a thread does not stop with it), which is exactly the case it is
for: a worker that woke up after its lease expired.

What remains is the interval between the renewal and the compare-and-swap ``update-ref`` right after
it (milliseconds of git work under a lock): a worker frozen inside it for longer than a whole lease TTL
could still land after a successor. The compare-and-swap then refuses it if the successor already
moved the branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from helixcode.agent.executors.base import TaskContext
from helixcode.agent.gitcmd import GitError
from helixcode.agent.workspace import Fence
from helixcode.errors import LeaseLost
from helixcode.store.store import Store

__all__ = ["LandingRefused", "landing_fence"]

log = logging.getLogger(__name__)
#: Seconds the fence waits for the database before it refuses (a landing that cannot be confirmed
#: does not happen; the attempt fails and is retried).
FENCE_TIMEOUT = 30.0


class LandingRefused(GitError):
    """The attempt lost its lease before landing: the job branch was left as it was."""


def landing_fence(ctx: TaskContext, store: Store, what: str) -> Fence:
    """A fence for ``ctx``'s attempt, to be called from a git thread (see the module's docstring).
    Must be built in the worker's event loop."""
    loop = asyncio.get_running_loop()
    task, token, attempt = ctx.task, ctx.token, ctx.attempt

    def check() -> None:
        try:
            asyncio.run_coroutine_threadsafe(store.confirm_lease(task.id, token), loop).result(FENCE_TIMEOUT)
        except LeaseLost as exc:
            reason = f"{what}: attempt {attempt} of {task.key} lost its lease; the job branch was not moved"
            log.warning(
                "%s",
                reason,
                extra={
                    "action": "task.landing_refused",
                    "job": task.job_id,
                    "task": task.id,
                    "task_key": task.key,
                },
            )
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(
                    store.record_refusal(task.id, token, "landing_refused", attempt, None, reason=reason),
                    loop,
                ).result(FENCE_TIMEOUT)
            raise LandingRefused(reason) from exc
        except RuntimeError as exc:  # the worker's loop is gone: nobody can vouch for the lease
            raise LandingRefused(f"{what}: the lease of {task.key} cannot be confirmed ({exc})") from exc

    return check
