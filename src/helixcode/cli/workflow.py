"""What the workflow commands (`helix run`, `helix plan`, `helix test`) share: their common options,
the repository check, submitting a job with its git base, the local worker pool and the live view.

The pool is processes rather than tasks in this process: each loads its own model and uses its own
core, a crash or a kill -9 takes down one worker and not the view, and they run exactly the code
`helix worker` runs on other machines. Ctrl-C pauses the job and drains the pool (running tasks are
handed back and resume from their checkpoints); `helix resume JOB` (or `helix run --attach JOB`, which
also starts a pool) continues it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from helixcode.cli.common import console, err_console, open_engine, run_async, state
from helixcode.domain.enums import JobStatus
from helixcode.errors import ConfigError

if TYPE_CHECKING:
    from helixcode.agent.workspace import Workspace
    from helixcode.domain.models import JobSummary
    from helixcode.domain.plan import JobSpec
    from helixcode.engine.engine import Engine

__all__ = [
    "LiveOpt",
    "ModelOpt",
    "Pool",
    "ProviderOpt",
    "RepoOpt",
    "RoundsOpt",
    "TokensOpt",
    "WorkersOpt",
    "agent_options",
    "check_repo",
    "execute",
    "submit",
    "workspace_for",
]

RepoOpt = Annotated[
    str,
    typer.Option(
        "--repo",
        help="The git repository: a local checkout (worked on in place), or a remote that workers "
        "clone and push to (a URL: https, ssh, file://; or a bare repository's path).",
    ),
]
ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="LLM provider name (default: selection).")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name (default: the provider's).")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Local worker processes to start.")]
#: Tool rounds of one agent task (``--max-rounds``, its old name, still works).
RoundsOpt = Annotated[
    int | None, typer.Option("--tool-rounds", "--max-rounds", min=1, help="Tool rounds per agent task.")
]
TokensOpt = Annotated[int | None, typer.Option("--max-tokens", min=16, help="Tokens per model reply.")]
LiveOpt = Annotated[bool, typer.Option("--live/--no-live", help="Show the live task view.")]

#: What the pool's workers can do; the view stops waiting when no such work is left.
POOL_CAPABILITIES = ["git", "llm", "sandbox"]


def agent_options(**given: Any) -> dict[str, Any]:
    """Agent options for a task's ``run``: only those given."""
    return {k: v for k, v in given.items() if v is not None}


def workspace_for(repo: str, job_id: str) -> Workspace:
    from helixcode.agent.workspace import Workspace  # lazy: the agent layer loads for these commands only

    return Workspace(repo, job_id, data_dir=state.settings().workers.data_dir)


def check_repo(repo: str) -> str:
    """The repository as the job records it: a checkout's absolute path, or the remote's URL (whose
    default branch must have a commit; a first use clones it into this machine's cache)."""
    from helixcode.agent.workspace import GitError

    ws = workspace_for(repo, "check")
    try:
        ws.start_commit_sync()
    except GitError as exc:
        if ws.url is None:
            raise ConfigError(f"--repo {repo}: not a git repository with at least one commit") from exc
        raise ConfigError(f"--repo {ws.shown}: {exc}") from exc
    return ws.url or str(ws.repo)


def check_sandbox() -> None:
    """The local pool runs agent and test tasks, which need a working sandbox (or ``agent.sandbox =
    "off"``): say so before anything is submitted, rather than start workers that will take nothing."""
    from helixcode.worker.capabilities import sandbox_probe

    probe = sandbox_probe(state.settings())
    if not probe.usable:
        raise ConfigError(f"the local workers could not take this job's tasks: {probe.line()}")


def submit(spec: JobSpec, repo: str) -> str:
    """Create the job and fix its git base (the repository's default branch now)."""
    from helixcode.agent.workspace import job_branch

    async def go() -> str:
        engine = await open_engine()
        try:
            job = await engine.jobs.submit(spec, workdir=repo)
        finally:
            await engine.aclose()
        await workspace_for(repo, job.id).ensure_base()
        return job.id

    job_id = run_async(go())
    shown = workspace_for(repo, job_id).shown
    console.print(
        f"Job [bold]{job_id}[/] on {shown}; its work lands on branch [bold]{job_branch(job_id)}[/]."
    )
    return job_id


class Pool:
    """`helix worker --exit-when-idle` processes, each in its own session (Ctrl-C is ours to handle)."""

    #: How many times dead workers are started again while their job still has work.
    MAX_RESTARTS = 3

    def __init__(self, n: int, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        settings = state.settings()
        self.env["HELIX_DATABASE_URL"] = settings.database.url
        # The database may have been found in a parent folder: its workers keep their clones beside it.
        self.env["HELIX_WORKERS_DATA_DIR"] = settings.workers.data_dir
        if state.config_path is not None:
            self.env["HELIX_CONFIG"] = str(state.config_path)
        self.logs = [log_dir / f"worker-{i + 1}.log" for i in range(n)]
        self.procs = [self._spawn(i) for i in range(n)]
        self.restarts = 0

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "helixcode",
            "worker",
            "--exit-when-idle",
            "--concurrency",
            "1",
            "--name",
            f"run-{i + 1}",
        ]
        with self.logs[i].open("ab") as out:
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def restart(self) -> list[int | None]:
        """Start the dead workers again (at most ``MAX_RESTARTS`` times): the leases of the tasks they
        held run out and the new ones resume those tasks from their checkpoints. Their exit codes, or
        an empty list when the restarts are spent."""
        if self.restarts >= self.MAX_RESTARTS:
            return []
        self.restarts += 1
        codes = [p.returncode for p in self.procs]
        self.procs = [p if p.poll() is None else self._spawn(i) for i, p in enumerate(self.procs)]
        return codes

    def stop(self, timeout: float = 60.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def execute(job_id: str, workers: int, live: bool) -> int:
    """Run the job on a local pool with the live view; the exit code its outcome calls for."""
    log_dir = Path(state.settings().workers.data_dir) / "logs" / job_id
    pool = Pool(workers, log_dir)
    try:
        status = run_async(_watch(job_id, pool, live))
    except KeyboardInterrupt:
        err_console.print("\ninterrupted: pausing the job and handing back running tasks...")
        run_async(_pause(job_id))
        pool.stop()
        err_console.print(f"Job {job_id} paused. Continue with `helix run --attach {job_id}`.")
        return 130
    finally:
        pool.stop()
    return 0 if status is JobStatus.SUCCEEDED else 1


async def _pause(job_id: str) -> None:
    engine = await open_engine()
    try:
        with contextlib.suppress(Exception):
            await engine.jobs.pause(job_id, "interrupted (Ctrl-C)")
    finally:
        await engine.aclose()


async def _watch(job_id: str, pool: Pool, live: bool) -> JobStatus:
    """Follow the job (``cli.follow``) until it ends or its pool can do no more, then report."""
    from helixcode.cli.follow import Follower

    engine = await open_engine()

    async def keep_going(summary: JobSummary) -> bool:
        if summary.job.status.terminal:
            return False
        if pool.alive() == 0 and not await engine.fleet.has_work(POOL_CAPABILITIES):
            return False
        if pool.alive() == 0 and summary.job.status is JobStatus.PAUSED:
            return False
        return not (pool.alive() == 0 and not _revived(pool, job_id))

    try:
        follower = Follower(
            engine.jobs,
            job_id,
            live=live,
            alive=pool.alive,
            outputs=lambda: engine.tasks.task_outputs(job_id),
        )
        summary = await follower.run(keep_going)
        await _report(engine, job_id, summary.job.status, summary.job.pause_reason)
        return summary.job.status
    finally:
        await engine.aclose()


async def _report(engine: Engine, job_id: str, status: JobStatus, pause_reason: str | None) -> None:
    """The summary table, the test cycle's outcome, and where the work is."""
    from helixcode.agent.workspace import job_branch
    from helixcode.cli.live import final_table, suite_report
    from helixcode.cli.render import status_text

    tasks = await engine.tasks.list_tasks(job_id)
    outputs = await engine.tasks.task_outputs(job_id)
    console.print(final_table(tasks, outputs, console.width))
    if report := suite_report(tasks, outputs):
        console.print(report)
    console.print(
        f"Job {job_id}: {status_text(status.value)}; its work: git log --graph {job_branch(job_id)}"
    )
    if pause_reason:
        console.print(f"paused because: {pause_reason}")


def _revived(pool: Pool, job_id: str) -> bool:
    """The whole pool died (killed, crashed) while its job has work left: start it again, or say where
    to look when it keeps dying."""
    codes = pool.restart()
    if codes:
        console.print(
            f"[yellow]the local workers stopped (exit codes {codes}); restarted them: their tasks resume "
            "once their leases run out[/]"
        )
        return True
    err_console.print(
        f"The local workers keep stopping; see {pool.logs[0].parent}/. "
        f"Continue with `helix run --attach {job_id}`."
    )
    return False
