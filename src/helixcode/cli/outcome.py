"""How a job turned out, for people and for scripts: `helix logs JOB [TASK]` (a task's output tail and
error, attempt by attempt) and `helix wait JOB` (block until the job ends; its exit code says how).

Exit codes of `wait`, and of `status JOB --exit-status` / `events JOB --follow --exit-status`::

    0  the job succeeded
    1  it failed or was cancelled
    2  no such job (bad input, as everywhere in the CLI)
    3  it has not ended: still running or paused (`wait`: --timeout passed first)

Both work through the REST API too (``--server``/``HELIX_SERVER``): `logs` reads a task's attempts from
``GET /jobs/{job}/tasks/{task}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from helixcode.cli.common import JsonOpt, console, err_console, run
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.outputs import output_sections, tail_lines

if TYPE_CHECKING:
    from rich.text import Text

    from helixcode.domain.models import Task
    from helixcode.domain.records import AttemptRecord
    from helixcode.engine.protocol import JobControl

__all__ = [
    "EXIT_NOT_ENDED",
    "exit_code",
    "logs",
    "output_sections",
    "tail_lines",
    "wait",
]

#: `wait` and `--exit-status`: the job has not ended (see the module docstring).
EXIT_NOT_ENDED = 3
#: Lines of each output kept: for the tasks asked about, and per task in the overview of a whole job.
LINES = 20
OVERVIEW_LINES = 5

JobArg = Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)]
ExitStatusOpt = Annotated[
    bool,
    typer.Option(
        "--exit-status",
        help="Exit 0 if the job succeeded, 1 if it failed or was cancelled, 3 if it has not ended.",
    ),
]


def exit_code(status: JobStatus) -> int:
    """The exit code a job's status calls for (see the module docstring)."""
    if status is JobStatus.SUCCEEDED:
        return 0
    return 1 if status.terminal else EXIT_NOT_ENDED


def logs(
    job: JobArg,
    task: Annotated[
        str | None,
        typer.Argument(help="A task's key; omit for every failed task (every task when none failed)."),
    ] = None,
    lines: Annotated[
        int | None,
        typer.Option(
            "--lines",
            "-n",
            min=1,
            help=f"Lines of each output to show (default: {LINES}; {OVERVIEW_LINES} each in an overview).",
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every task that ran, not only the failed ones.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A task's output tail and error, attempt by attempt (newest last).

    Shell tasks show their stdout and stderr; agent and test tasks their summary and the tests' output.
    Without TASK: every failed task, or the last lines of every task that ran when none failed."""

    async def go(m: JobControl) -> tuple[bool, list[tuple[Task, list[AttemptRecord]]]]:
        if task is not None:
            return True, [await m.task_attempts(job, task)]
        found = await m.tasks(job)
        failed = [t for t in found if t.status is TaskStatus.FAILED]
        chosen = failed if failed and not all_ else [t for t in found if t.attempts or t.last_error]
        return bool(failed) and not all_, [await m.task_attempts(job, t.key) for t in chosen]

    focused, found = run(go)
    if as_json:
        from helixcode.cli.render import emit_json

        emit_json(console, [{"task": t.to_dict(), "attempts": [a.to_dict() for a in at]} for t, at in found])
        return
    if not found:
        console.print("No task has run yet.")
        return
    keep = lines or (LINES if focused else OVERVIEW_LINES)
    for i, (t, attempts) in enumerate(found):
        if i:
            console.print()
        for line in _task_log(t, attempts, keep):
            console.print(line)


def _task_log(task: Task, attempts: Sequence[AttemptRecord], lines: int) -> list[Text | str]:
    from rich.text import Text

    from helixcode.cli.render import STATUS_STYLE

    head = Text(f"{task.key} ", style="bold")
    head.append(task.status.value, style=STATUS_STYLE.get(task.status.value, ""))
    head.append(f"  {task.type.value}, {task.attempts}/{task.max_attempts} attempts", style="dim")
    out: list[Text | str] = [head]
    for a in attempts:
        took = f", {a.finished_at - a.started_at:.0f}s" if a.started_at is not None else ""
        line = Text(f"attempt {a.attempt}: ", style="dim")
        line.append(a.outcome, style=STATUS_STYLE.get(a.outcome, ""))
        line.append(f" (worker {a.worker_id or '-'}{took})", style="dim")
        out.append(line)
        if a.error:
            out.append(Text(f"  error: {a.error}", style="red"))
        for label, text in output_sections(a.output):
            out.append(Text(f"  {label}:", style="bold"))
            out.append(Text("\n".join("    " + s for s in tail_lines(text, lines).splitlines())))
    if task.status is TaskStatus.RUNNING:
        now = task.progress_message or ""
        out.append(Text(f"attempt {task.attempts}: running ({task.progress:.0%}) {now}".rstrip()))
    elif not attempts:
        why = f": {task.last_error}" if task.last_error else ""
        out.append(Text(f"no finished attempt{why}", style="dim"))
    return out


def wait(
    job: JobArg,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after this many seconds (exit 3).")
    ] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 1.0,
) -> None:
    """Block until the job ends; the exit code says how (for scripts and CI).

    Exit 0 if it succeeded, 1 if it failed or was cancelled, 2 if there is no such job, 3 if --timeout
    passed first."""
    import asyncio

    async def go(m: JobControl) -> tuple[str, JobStatus, str | None]:
        deadline = None if timeout is None else time.monotonic() + timeout
        told_paused = False
        while True:
            summary = await m.summary(job)
            status = summary.job.status
            if status.terminal:
                return summary.job.id, status, None
            if status is JobStatus.PAUSED and not told_paused:
                told_paused = True
                err_console.print(
                    f"job {summary.job.id} is paused ({summary.job.pause_reason or 'no reason given'}); "
                    f"waiting for `helix resume {summary.job.id}` or `helix cancel {summary.job.id}`",
                    highlight=False,
                    soft_wrap=True,
                )
            elif status is not JobStatus.PAUSED:
                told_paused = False
            if deadline is not None and time.monotonic() >= deadline:
                return summary.job.id, status, f"still {status.value} after {timeout:g}s"
            left = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            await asyncio.sleep(left)

    job_id, status, unfinished = run(go)
    if unfinished:
        err_console.print(f"job {job_id}: {unfinished}", highlight=False)
    else:
        console.print(f"Job {job_id} {status.value}.", highlight=False)
    raise typer.Exit(exit_code(status))
