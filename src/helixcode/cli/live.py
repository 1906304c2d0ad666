"""The live view of a running job and the summary at its end, as Rich renderables from plain records.

Both fit the console: from ``WIDE`` columns up every column shows; below it the task column shows each
key's last part only (the indentation already says whose child it is), the type and token columns go,
the progress bar shortens, and the free-text column takes what is left, cut with an ellipsis, so a row
stays one line at 80 columns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from helixcode.cli.render import STATUS_STYLE, _bar, event_line
from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Event, JobSummary, Task

__all__ = ["WIDE", "final_table", "job_view", "status_changes", "status_line", "suite_report", "tree"]

#: Narrower consoles get the compact layout.
WIDE = 110
Outputs = Mapping[str, Mapping[str, Any]]


def tree(tasks: Sequence[Task]) -> list[tuple[Task, int]]:
    """Tasks in tree order (children after their parent, in creation order), with their depth."""
    children: dict[str | None, list[Task]] = {}
    known = {t.key for t in tasks}
    for t in tasks:
        parent = t.parent_key if t.parent_key in known else None
        children.setdefault(parent, []).append(t)
    out: list[tuple[Task, int]] = []

    def walk(parent: str | None, depth: int) -> None:
        for t in children.get(parent, []):
            out.append((t, depth))
            walk(t.key, depth + 1)

    walk(None, 0)
    return out


def _label(task: Task, depth: int, compact: bool) -> str:
    key = task.key
    if compact and task.parent_key and key.startswith(task.parent_key + "."):
        key = key[len(task.parent_key) + 1 :]
    return "  " * depth + key


def _cut(text: str) -> Text:
    """A free-text cell: one line, cut with an ellipsis to whatever width its column gets."""
    return Text(" ".join(text.split()), no_wrap=True, overflow="ellipsis")


def _elapsed(t: Task) -> str:
    if t.started_at is None:
        return "-"
    end = t.finished_at or time.time()
    return f"{max(0.0, end - t.started_at):.0f}s"


def _table(title: str | None, columns: Sequence[str]) -> Table:
    """The last column is the free-text one: the only one the table may narrow (see the module doc)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for col in columns[:-1]:
        table.add_column(col, no_wrap=True)
    table.add_column(columns[-1], no_wrap=False, min_width=8)
    return table


def job_view(
    summary: JobSummary,
    tasks: Sequence[Task],
    outputs: Outputs,
    recent: Sequence[Event],
    elapsed: float,
    alive: int,
    width: int,
) -> Group:
    """The live view: a head line, the task tree, the latest events."""
    compact = width < WIDE
    columns = ["task", "status", "tries", "progress", "time", "now"]
    if not compact:
        columns[1:1] = ["type"]
        columns[-2:-2] = ["tokens"]
    table = _table(None, columns)
    for t, depth in tree(tasks):
        out = outputs.get(t.key, {})
        done = 1.0 if t.status in (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED) else t.progress
        cells: dict[str, Any] = {
            "task": _label(t, depth, compact),
            "type": t.type.value,
            "status": Text(t.status.value, style=STATUS_STYLE.get(t.status.value, "")),
            "tries": str(t.attempts),
            "progress": f"{_bar(done, 5 if compact else 10)} {done:4.0%}",
            "tokens": str(out.get("tokens", "-")),
            "time": _elapsed(t),
            "now": _cut(t.last_error or t.progress_message or str(out.get("summary") or "")),
        }
        table.add_row(*(cells[c] for c in columns))
    head = _cut(
        f"job {summary.job.id}  {summary.job.status.value}  {_bar(summary.progress, 12 if compact else 24)} "
        f"{summary.progress:4.0%}  workers {alive}  {elapsed:.0f}s  {summary.job.name}"
    )
    lines = []
    for e in recent:
        line = event_line(e)
        line.no_wrap, line.overflow = True, "ellipsis"
        lines.append(line)
    return Group(head, table, *lines)


def status_changes(tasks: Sequence[Task], seen: Mapping[str, str]) -> list[Task]:
    """The tasks whose status is not the one last seen (new tasks included), in tree order: what the
    progress lines print when stdout is not a terminal."""
    return [t for t, _ in tree(tasks) if seen.get(t.key) != t.status.value]


#: Events that put a task in a status it may leave before the next look (a task that runs in under a
#: second goes ready -> succeeded between two snapshots).
PASSING_STATUS = {"claimed": TaskStatus.RUNNING, "retried": TaskStatus.RETRYING, "requeued": TaskStatus.READY}


def passed_through(events: Sequence[Event], tasks: Sequence[Task], seen: Mapping[str, str]) -> list[Task]:
    """The statuses tasks passed through since the last look, which their snapshot no longer shows:
    each as the task in that status, in event order, so the progress lines name every change."""
    by_key = {t.key: t for t in tasks}
    shown = dict(seen)
    found = []
    for e in events:
        status = PASSING_STATUS.get(e.kind)
        task = by_key.get(e.task_key) if e.task_key is not None else None
        if status is None or task is None or task.status is status or shown.get(task.key) == status.value:
            continue
        shown[task.key] = status.value
        found.append(replace(task, status=status))
    return found


def status_line(task: Task, elapsed: float) -> Text:
    """One progress line: the job's elapsed time, the task's key and status, how long it ran once it
    has ended, and why it failed. One line, cut to the console's width."""
    line = Text(f"{elapsed:5.0f}s  {task.key:<20} ")
    line.append(task.status.value, style=STATUS_STYLE.get(task.status.value, ""))
    if task.status.terminal and task.started_at is not None:
        line.append(f" after {_elapsed(task)}")
    if task.status in (TaskStatus.FAILED, TaskStatus.RETRYING) and task.last_error:
        line.append(": " + " ".join(task.last_error.split()))
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def final_table(tasks: Sequence[Task], outputs: Outputs, width: int) -> Table:
    """Each task's outcome, duration, tokens, tool rounds and commit, and what it said."""
    compact = width < WIDE
    columns = ["task", "outcome", "duration", "tokens", "rounds", "commit", "summary"]
    if compact:
        columns.remove("rounds")
    table = _table("Summary", columns)
    for t, depth in tree(tasks):
        out = outputs.get(t.key, {})
        stop = out.get("stop_reason")
        cells: dict[str, Any] = {
            "task": _label(t, depth, compact),
            "outcome": Text(
                t.status.value + (f" ({stop})" if stop not in (None, "finished") else ""),
                style=STATUS_STYLE.get(t.status.value, ""),
            ),
            "duration": f"{t.finished_at - t.started_at:.0f}s" if t.finished_at and t.started_at else "-",
            "tokens": str(out.get("tokens", "-")),
            "rounds": str(out.get("rounds", "-")),
            "commit": str(out.get("commit") or "-")[: 7 if compact else 10],
            "summary": _cut(t.last_error or str(out.get("summary") or "")),
        }
        table.add_row(*(cells[c] for c in columns))
    return table


def suite_report(tasks: Sequence[Task], outputs: Outputs) -> Text | None:
    """How the job's test cycle ended (its latest test run), or None when the job has no test runs."""
    runs = [t for t in tasks if "tests" in t.run]
    if not runs:
        return None
    last = max(runs, key=lambda t: t.id)
    if last.status is TaskStatus.SUCCEEDED:
        return Text(str(outputs.get(last.key, {}).get("summary") or "tests pass"), style="green")
    if last.status is TaskStatus.FAILED:
        return Text(last.last_error or "tests failed", style="bold red")
    if last.status is TaskStatus.UPSTREAM_FAILED:
        broken = [t for t in tasks if t.status is TaskStatus.FAILED and t.key in last.depends_on]
        why = "; ".join(f"{t.key} failed: {t.last_error}" for t in broken) or "a dependency failed"
        round_ = last.run["tests"].get("round")
        return Text(f"the test cycle stopped before round {round_}: {why}", style="red")
    return Text(f"tests: {last.key} is {last.status.value}", style="yellow")
