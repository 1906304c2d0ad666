"""`helix watch [JOB]`: jobs, a job's task tree, its live events and the workers, in a terminal UI
(``cli.tui``, Textual, imported by this command only); works on the database and with ``--server``.

When stdout is not a terminal (a log, CI) or with ``--once``, there is no screen to draw: it prints a
line per task status change, as `helix run` does there (``cli.follow``), until JOB ends; its exit code
then says how the job ended, as `helix wait`'s does (``--once``: one look, exit 0).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from helixcode.cli.common import console, run, state

if TYPE_CHECKING:
    from helixcode.domain.models import JobSummary
    from helixcode.engine.protocol import JobControl

__all__ = ["register"]


def watch(
    job: Annotated[
        str | None,
        typer.Argument(
            help="The job to show first (default: the latest); without a terminal, the one to follow."
        ),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between looks.")] = 1.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print JOB's task statuses once and exit (no terminal UI).")
    ] = False,
) -> None:
    """Watch jobs live: task tree, events, workers. Keys: p pause, r resume, c cancel the job, t retry,
    s skip the task under the cursor, q quit. Without a terminal: a line per task status change until
    JOB ends (exit 0 succeeded, 1 failed or cancelled)."""
    if once or not sys.stdout.isatty():
        raise typer.Exit(_follow(job, once))
    remote = state.remote()
    if remote is None:
        from helixcode.config import mask_url

        source = f"database {mask_url(state.settings().database.url)}"
    else:
        source = f"server {remote}"

    async def go(control: JobControl) -> int:
        from helixcode.cli.tui.app import WatchApp  # lazy: Textual loads for this command only

        # A job that does not exist, a server that refuses the token: said before any screen is drawn.
        job_id = await control.resolve(job) if job is not None else None
        await control.jobs(1)
        app = WatchApp(control, job_id, interval=interval, source=source)
        await app.run_async()
        return app.return_code or 0

    raise typer.Exit(run(go))


def _follow(job: str | None, once: bool) -> int:
    """The job's task status lines (``cli.follow``) until it ends, or once; the exit code."""
    from helixcode.cli.follow import Follower
    from helixcode.cli.outcome import exit_code
    from helixcode.cli.render import status_text
    from helixcode.errors import ConfigError

    if job is None:
        raise ConfigError(
            "without a terminal, helix watch follows one job: give JOB (`helix status` lists them)"
        )
    wanted = job

    async def go(control: JobControl) -> JobSummary:
        follower = Follower(control, await control.resolve(wanted), live=True)

        async def keep_going(summary: JobSummary) -> bool:
            return not once and not summary.job.status.terminal

        return await follower.run(keep_going)

    summary = run(go)
    counts = ", ".join(f"{n} {s.value}" for s, n in summary.counts.items() if n)
    line = status_text(summary.job.status.value)
    console.print(f"Job {summary.job.id} ", line, f": {counts}", sep="", highlight=False)
    return 0 if once else exit_code(summary.job.status)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel="Inspect")(watch)
