"""Rich renderings of domain records; JSON output goes through ``emit_json`` so scripts get one shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from helixcode.config import mask_url
from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Event, JobSummary, Task

__all__ = ["emit_json", "event_line", "job_table", "jobs_table", "tasks_table"]

STATUS_STYLE: dict[str, str] = {
    "blocked": "dim",
    "ready": "cyan",
    "running": "bold blue",
    "retrying": "yellow",
    "waiting": "blue",
    "paused": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "upstream_failed": "red",
    "cancelled": "dim red",
    "skipped": "dim green",
}


def emit_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = max(0.0, now - ts)
    if delta < 60:
        return f"{delta:.0f}s ago"
    if delta < 3600:
        return f"{delta / 60:.0f}m ago"
    return f"{delta / 3600:.1f}h ago"


def _bar(fraction: float, width: int = 12) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def jobs_table(summaries: Iterable[JobSummary]) -> Table:
    now = time.time()
    table = Table(title="Jobs", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("job", "name", "status", "tasks", "progress", "created"):
        table.add_column(col)
    for s in summaries:
        table.add_row(
            s.job.id,
            s.job.name,
            status_text(s.job.status.value),
            _counts(s),
            f"{_bar(s.progress)} {s.progress:4.0%}",
            _ago(s.job.created_at, now),
        )
    return table


def _counts(s: JobSummary) -> str:
    order = list(TaskStatus)
    return " ".join(
        f"{n} {st.value}" for st, n in sorted(s.counts.items(), key=lambda kv: order.index(kv[0]))
    )


def job_table(s: JobSummary) -> Table:
    table = Table(title=f"Job {s.job.id}: {s.job.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", status_text(s.job.status.value))
    if s.job.pause_reason:
        table.add_row("paused because", s.job.pause_reason)
    table.add_row("tasks", f"{s.total}: {_counts(s)}")
    table.add_row("progress", f"{_bar(s.progress, 24)} {s.progress:.1%}")
    if s.eta_seconds is not None:
        table.add_row("eta", f"{s.eta_seconds:.0f}s (from measured task durations)")
    if s.tokens:
        cost = "price unknown" if s.cost_usd is None else f"${s.cost_usd:.4f}"
        table.add_row("model calls", f"{s.tokens:,} tokens, {cost}")
    table.add_row("workdir", mask_url(s.job.workdir) if s.job.workdir else "-")
    if s.job.description:
        table.add_row("description", s.job.description)
    return table


def tasks_table(tasks: Iterable[Task], title: str = "Tasks") -> Table:
    """One row per task; the tokens and cost columns appear once any task has made a model call."""
    tasks = list(tasks)
    with_usage = any(t.tokens for t in tasks)
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("task", "type", "status", "prio", "crit", "tries", "done"):
        table.add_column(col, no_wrap=True)
    if with_usage:
        table.add_column("tokens", no_wrap=True, justify="right")
        table.add_column("cost", no_wrap=True, justify="right")
    table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=32)
    table.add_column("depends on", overflow="fold")
    for t in tasks:
        usage = [f"{t.tokens:,}" if t.tokens else "-", _cost(t)] if with_usage else []
        table.add_row(
            t.key,
            t.type.value,
            status_text(t.status.value),
            t.priority.value,
            t.criticality.value,
            f"{t.attempts}/{t.max_attempts}",
            f"{t.progress:.0%}",
            *usage,
            t.title,
            ", ".join(t.depends_on) or "-",
        )
    return table


def _cost(t: Task) -> str:
    if not t.tokens:
        return "-"
    return "?" if t.cost_usd is None else f"${t.cost_usd:.4f}"


def event_line(e: Event) -> Text:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.created_at)) + f".{int(e.created_at % 1 * 1000):03d}"
    line = Text(f"{e.id:>6} {stamp} ")
    line.append(f"{e.kind:<16}", style=STATUS_STYLE.get(e.kind, "bold"))
    line.append(f" {e.task_key or '(job)'}")
    if e.attempt is not None:
        line.append(f" #{e.attempt}", style="dim")
    if e.worker_id:
        line.append(f" @{e.worker_id}", style="dim")
    if e.details:
        line.append(" " + json.dumps(e.details, default=str), style="dim")
    return line
