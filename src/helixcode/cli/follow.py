"""Following one job in the console until it ends: what `helix run` shows of its job, and what
`helix watch JOB` prints when stdout is not a terminal (a log, CI).

On a terminal, the Rich live view of the task tree (``cli.live.job_view``); when stdout is not one, a
line per task status change (``cli.live.status_line``); with ``live=False``, every event. The job is
read through ``JobControl`` only, so the same loop follows a local database or a `helix serve`::

    summary = await Follower(control, job_id, live=True).run(until_ended)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from helixcode.cli.common import console

if TYPE_CHECKING:
    from helixcode.domain.models import Event, JobSummary, Task
    from helixcode.engine.protocol import JobControl

__all__ = ["Follower", "until_ended"]

Outputs = Mapping[str, Mapping[str, Any]]
#: Called after each look at the job: whether to keep following it.
KeepGoing = Callable[["JobSummary"], Awaitable[bool]]


async def until_ended(summary: JobSummary) -> bool:
    """Follow the job until it ends (succeeded, failed or cancelled)."""
    return not summary.job.status.terminal


class Follower:
    """One job, shown as it changes. ``alive``: the local workers running it (for the live view's
    head line); ``outputs``: the tasks' outputs (tokens, summaries) where the database is at hand."""

    def __init__(
        self,
        control: JobControl,
        job_id: str,
        *,
        live: bool,
        alive: Callable[[], int] = lambda: 0,
        outputs: Callable[[], Awaitable[Outputs]] | None = None,
    ) -> None:
        self.control = control
        self.job_id = job_id
        self.alive = alive
        self.outputs = outputs
        self.view = _LiveView(alive) if live and console.is_terminal else None
        #: The status last printed per task: status lines rather than events (no terminal, ``live``).
        self.seen: dict[str, str] | None = {} if live and self.view is None else None
        self.cursor = 0
        self.started = time.monotonic()

    async def run(self, keep_going: KeepGoing = until_ended) -> JobSummary:
        """Look at the job every second (half a second while events come) until ``keep_going`` says
        stop; its last summary."""
        with self.view or contextlib.nullcontext():
            while True:
                events, summary = await self.step()
                if not await keep_going(summary):
                    return summary
                await asyncio.sleep(0.5 if events else 1.0)

    async def step(self) -> tuple[list[Event], JobSummary]:
        """One look: new events, the job, and its tasks when they are shown."""
        from helixcode.cli.render import event_line

        events = await self.control.events(self.job_id, self.cursor)
        if events:
            self.cursor = events[-1].id
            if self.view is not None:
                self.view.recent = (self.view.recent + events)[-6:]
            elif self.seen is None:
                for e in events:
                    console.print(event_line(e))
        summary = await self.control.summary(self.job_id)
        if self.view is not None or self.seen is not None:
            tasks = await self.control.tasks(self.job_id)
            self.show(summary, tasks, await self.outputs() if self.outputs is not None else {}, events)
        return events, summary

    def show(
        self, summary: JobSummary, tasks: Sequence[Task], outputs: Outputs, events: Sequence[Event] = ()
    ) -> None:
        from helixcode.cli.live import passed_through, status_changes, status_line

        took = time.monotonic() - self.started
        if self.view is not None:
            self.view.update(summary, tasks, outputs, took)
            return
        assert self.seen is not None
        for t in [*passed_through(events, tasks, self.seen), *status_changes(tasks, self.seen)]:
            self.seen[t.key] = t.status.value
            console.print(status_line(t, took))


class _LiveView:
    """The Rich live view of the task tree (a terminal only), as a context manager."""

    def __init__(self, alive: Callable[[], int]) -> None:
        from rich.live import Live

        self.alive = alive
        self.recent: list[Event] = []
        self.live = Live(console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> _LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self, summary: JobSummary, tasks: Sequence[Task], outputs: Outputs, took: float) -> None:
        from helixcode.cli.live import job_view

        self.live.update(job_view(summary, tasks, outputs, self.recent, took, self.alive(), console.width))
