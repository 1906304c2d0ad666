"""The Textual app of `helix watch`: jobs, the selected job's task tree, its live events, the workers.

Everything is read and changed through ``JobControl`` (``Feed`` reads), so the app is the same on a
local database and through `helix serve`. One background loop looks every ``interval`` seconds, and
at once after a key changed something; a look that fails (the server or database away) is shown in
the header and the next one tries again.

Keys: ``p`` pause the job, ``r`` resume it, ``c`` cancel it (asks first), ``t`` retry the task under
the cursor, ``s`` skip it (asks first), ``tab`` between the jobs and the tasks, ``q`` quit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Label, RichLog, Static

from helixcode.cli.history import MEASURES, series, sparkline
from helixcode.cli.live import tree
from helixcode.cli.render import STATUS_STYLE, _bar, event_line
from helixcode.cli.tui.feed import Feed, JobView, Sample, WorkerTrace
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.errors import HelixError

if TYPE_CHECKING:
    from helixcode.domain.models import JobSummary, Task
    from helixcode.engine.protocol import JobControl

__all__ = ["ConfirmScreen", "WatchApp"]

READ = {label: read for label, _, read, _ in MEASURES}
SPARK = 16
#: Seconds the app waits, as it closes, for a look in flight.
STOP_WAIT = 5.0


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; ``y`` or Yes confirms, ``n``, Escape or No declines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; height: auto; border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question")
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def _status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def _money(cost: float | None) -> str:
    return "-" if cost is None else f"${cost:.4f}"


class WatchApp(App[None]):
    """``job``: the job to select first (an id or a unique prefix), else the most recent one."""

    TITLE = "helix watch"
    CSS = """
    #top { height: 2fr; }
    #bottom { height: 1fr; }
    #jobs { width: 44; height: 1fr; }
    #tasks, #workers { height: 1fr; }
    #job-head { height: auto; padding: 0 1; }
    #jobs, #tasks, #events, #workers { border: round $primary-darken-2; }
    #jobs:focus, #tasks:focus { border: round $accent; }
    #events { width: 1fr; }
    #workers { width: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause job"),
        Binding("r", "resume", "Resume job"),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("t", "retry_task", "Retry task"),
        Binding("s", "skip_task", "Skip task"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, control: JobControl, job: str | None = None, *, interval: float = 1.0, source: str = ""
    ) -> None:
        super().__init__()
        self.feed = Feed(control)
        self.control = control
        self.wanted = job
        self.job_id: str | None = None
        self.summary: JobSummary | None = None
        self.interval = interval
        self.source = source
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._looking: asyncio.Task[None] | None = None
        # Made here and kept, rather than queried: typed, and reachable whichever screen is on top.
        self.jobs_table: DataTable[object] = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        self.head = Static("no job yet", id="job-head")
        self.tasks_table: DataTable[object] = DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        self.events_log = RichLog(id="events", max_lines=500, wrap=False)
        self.workers_table: DataTable[object] = DataTable(id="workers", cursor_type="none", show_cursor=False)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield self.jobs_table
            with Vertical():
                yield self.head
                yield self.tasks_table
        with Horizontal(id="bottom"):
            yield self.events_log
            yield self.workers_table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.source
        jobs = self.jobs_table
        jobs.border_title = "Jobs"
        for key in ("job", "name", "status", "done"):
            jobs.add_column(key, key=key)
        tasks = self.tasks_table
        tasks.border_title = "Tasks"
        for key in ("task", "type", "status", "tries", "progress", "tokens", "cost", "worker", "now"):
            tasks.add_column(key, key=key)
        self.events_log.border_title = "Events"
        workers = self.workers_table
        workers.border_title = "Workers"
        for key in ("worker", "status", "tasks", "cpu", "cpu over time", "mem", "mem over time"):
            workers.add_column(key, key=key)
        tasks.focus()
        # A task of our own rather than a Textual worker, which the app cancels as it closes: a query
        # cut off midway can leave its database connection unusable for whoever closes the store.
        self._looking = asyncio.create_task(self._look_loop(), name="helix-watch-look")

    async def on_unmount(self) -> None:
        """Let a look in flight finish (``STOP_WAIT`` seconds at most), then stop looking."""
        self._stop.set()
        self._wake.set()
        if self._looking is None:
            return
        done, _ = await asyncio.wait({self._looking}, timeout=STOP_WAIT)
        if not done:
            self._looking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._looking

    # -- reading --------------------------------------------------------------------------------

    async def _look_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.look()
                problem = None
            except HelixError as exc:  # the server or the database away: said, and tried again
                problem = str(exc)
            except Exception:  # a bug: the app stops and says so, rather than freeze
                self.exit(return_code=1, message=f"helix watch stopped:\n{traceback.format_exc()}")
                return
            if not self._stop.is_set():
                self.sub_title = self.source if problem is None else f"{self.source}: {problem}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def look(self) -> None:
        """Read everything, then show it all at once (one consistent screen per look)."""
        if self.job_id is None and self.wanted is not None:
            self.job_id = await self.control.resolve(self.wanted)
        jobs = await self.feed.jobs()
        if self.job_id is None and jobs:
            self.job_id = jobs[0].job.id
        view, events, job_id = None, [], self.job_id
        if job_id is not None:
            view = await self.feed.job(job_id)
            events = await self.feed.events(job_id)
        workers = await self.feed.workers()
        if self._stop.is_set():
            return
        if view is not None and job_id == self.job_id:  # not switched to another job meanwhile
            self._show_job(view)
            for e in events:
                self.events_log.write(event_line(e))
        self._show_jobs(jobs)
        self._show_workers(workers)

    def _show_jobs(self, jobs: Sequence[JobSummary]) -> None:
        table = self.jobs_table
        rows = {
            s.job.id: [s.job.id, s.job.name, _status(s.job.status.value), f"{s.progress:4.0%}"] for s in jobs
        }
        if self.job_id is not None and self.job_id not in rows and self.summary is not None:
            s = self.summary  # an older job named on the command line: listed too
            rows[s.job.id] = [s.job.id, s.job.name, _status(s.job.status.value), f"{s.progress:4.0%}"]
        _fill(table, rows, self.job_id)

    def _show_job(self, view: JobView) -> None:
        self.summary = s = view.summary
        counts = ", ".join(f"{n} {st.value}" for st, n in s.counts.items() if n)
        head = Text.assemble(
            (f"{s.job.id} ", "bold"),
            _status(s.job.status.value),
            f"  {_bar(s.progress, 20)} {s.progress:4.0%}  {s.job.name}\n",
            f"{s.total} tasks: {counts or '-'}",
            f"  tokens {s.tokens:,}  cost {_money(s.cost_usd)}" if s.tokens else "",
            f"  eta {s.eta_seconds:.0f}s" if s.eta_seconds is not None else "",
        )
        if s.job.pause_reason:
            head.append(f"\npaused because: {s.job.pause_reason}", style="magenta")
        self.head.update(head)
        _fill(self.tasks_table, {t.key: _task_row(t, depth) for t, depth in tree(view.tasks)}, None)

    def _show_workers(self, traces: Sequence[WorkerTrace]) -> None:
        table = self.workers_table
        rows = {}
        for trace in traces:
            w, res = trace.worker, trace.worker.resources
            cpu, mem = _latest(trace.samples, "cpu"), _latest(trace.samples, "memory")
            rows[w.id] = [
                w.name,
                _status(w.status),
                f"{w.running}/{w.concurrency}",
                f"{res.get('cpu_percent', 0):.0f}%" if res.get("cpu_percent") is not None else "-",
                sparkline(cpu, SPARK, lo=0, hi=100),
                f"{res.get('memory_percent', 0):.0f}%" if res.get("memory_percent") is not None else "-",
                sparkline(mem, SPARK, lo=0, hi=100),
            ]
        _fill(table, rows, None)
        note = "" if self.feed.stored_history is not False else " (history since this watch began)"
        table.border_title = f"Workers{note}"

    # -- selection ------------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if table.id != "jobs" or event.row_key.value is None or event.row_key.value == self.job_id:
            return
        if _cursor_key(table) != event.row_key.value:
            return  # a stale move while the table was rebuilt
        self.job_id = event.row_key.value
        self.summary = None
        self.feed.forget(self.job_id)
        self.events_log.clear()
        self.tasks_table.clear()
        self.head.update(f"{self.job_id}: loading...")
        self._wake.set()

    def selected_task(self) -> str | None:
        return _cursor_key(self.tasks_table)

    # -- actions --------------------------------------------------------------------------------

    async def _change(self, what: str, change: Callable[[str], Awaitable[object]]) -> None:
        if self.job_id is None:
            self.notify("no job selected", severity="warning")
            return
        try:
            await change(self.job_id)
        except HelixError as exc:
            self.notify(str(exc), title=f"could not {what}", severity="error")
            return
        self.notify(f"{what}: done")
        self._wake.set()

    async def action_pause(self) -> None:
        await self._change("pause the job", lambda job: self.control.pause(job, "paused in helix watch"))

    async def action_resume(self) -> None:
        if self.summary is not None and self.summary.job.status is JobStatus.RUNNING:
            self.notify("the job is running: nothing to resume", severity="warning")
            return
        await self._change("resume the job", self.control.resume)

    def action_cancel_job(self) -> None:
        if self.job_id is None:
            return
        name = f" ({self.summary.job.name})" if self.summary else ""

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._change("cancel the job", self.control.cancel)

        self.push_screen(
            ConfirmScreen(f"Cancel job {self.job_id}{name}? Its unfinished tasks stop for good."), answered
        )

    async def action_retry_task(self) -> None:
        if (key := self.selected_task()) is not None:
            await self._change(f"retry {key}", lambda job: self.control.resume(job, retry=[key]))

    def action_skip_task(self) -> None:
        if (key := self.selected_task()) is None:
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._change(f"skip {key}", lambda job: self.control.resume(job, skip=[key]))

        self.push_screen(ConfirmScreen(f"Skip task {key}? Its dependents go on without it."), answered)


def _latest(samples: Sequence[Sample], measure: str) -> list[tuple[float, float]]:
    """The measure's latest ``SPARK`` values, one cell each (heartbeats come at uneven times; the
    history view of `helix worker list --history` is the one that places them in time)."""
    values = [v for _, v in series(samples, READ[measure])][-SPARK:]
    return list(enumerate(values, start=0)) if values else []


def _task_row(t: Task, depth: int) -> list[object]:
    done = 1.0 if t.status.satisfies_dependents else t.progress
    now = t.last_error or t.progress_message or ""
    if t.status is TaskStatus.RETRYING and t.next_attempt_at is not None:
        now = f"next try in {max(0.0, t.next_attempt_at - time.time()):.0f}s: {now}"
    return [
        "  " * depth + t.key,
        t.type.value,
        _status(t.status.value),
        f"{t.attempts}/{t.max_attempts}",
        f"{_bar(done, 8)} {done:4.0%}",
        f"{t.tokens:,}" if t.tokens else "-",
        _money(t.cost_usd),
        (t.lease_owner if t.status is TaskStatus.RUNNING and t.lease_owner else "-")[:20],
        Text(" ".join(now.split())[:120], no_wrap=True, overflow="ellipsis"),
    ]


def _cursor_key(table: DataTable[object]) -> str | None:
    if table.row_count == 0:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def _fill(table: DataTable[object], rows: dict[str, list[object]], select: str | None) -> None:
    """Show ``rows`` (by key, in order): cells updated in place when the keys and their order are
    unchanged, else the table rebuilt with the cursor kept on its row (or moved to ``select``)."""
    keys = [k.value for k in table.rows]
    columns = list(table.columns)
    if keys == list(rows):
        for key, cells in rows.items():
            for column, cell in zip(columns, cells, strict=True):
                table.update_cell(key, column, cell, update_width=True)
        return
    keep = select or _cursor_key(table)
    table.clear()
    for key, cells in rows.items():
        table.add_row(*cells, key=key)
    if keep in rows:
        table.move_cursor(row=list(rows).index(keep), animate=False)
