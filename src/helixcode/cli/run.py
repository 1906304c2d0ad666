"""The main workflows: `helix run GOAL`, `helix plan GOAL` and the live view of a running job.

`helix run` creates the job (one planning task whose subtasks are inserted when it has planned), starts
a local pool of worker processes (`helix worker --exit-when-idle`, one task each) and shows the task tree
live until the job ends. The pool is processes rather than tasks in this process: each loads its own
model and uses its own core, a crash or a kill -9 takes down one worker and not the view, and they run
exactly the code `helix worker` runs on other machines. Ctrl-C pauses the job and drains the pool (running
tasks are handed back and resume from their checkpoints); `helix resume JOB` (or `helix run --attach JOB`,
which also starts a pool) continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from helixcode.agent.workspace import GitError, Workspace, job_branch
from helixcode.cli.common import console, err_console, run_async, state
from helixcode.cli.render import STATUS_STYLE, _bar, event_line, status_text
from helixcode.domain.enums import JobStatus, TaskType
from helixcode.domain.models import Event, Task
from helixcode.domain.plan import AgentRun, JobSpec, TaskSpec
from helixcode.engine.manager import TaskManager
from helixcode.errors import ConfigError
from helixcode.store.store import Store

__all__ = ["register"]

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
RoundsOpt = Annotated[int | None, typer.Option("--max-rounds", min=1, help="Tool rounds per task.")]
SubtasksOpt = Annotated[int, typer.Option("--max-subtasks", min=1, max=20, help="Subtasks a plan may have.")]
TokensOpt = Annotated[int | None, typer.Option("--max-tokens", min=16, help="Tokens per model reply.")]
TestOpt = Annotated[str | None, typer.Option("--test-command", help="How to run the project's tests.")]
ChainOpt = Annotated[bool, typer.Option("--chain", help="Run the planned subtasks one after another.")]
LiveOpt = Annotated[bool, typer.Option("--live/--no-live", help="Show the live task view.")]


class OnConflict(StrEnum):
    FAIL = "fail"
    DEBUG = "debug"


ConflictOpt = Annotated[
    OnConflict,
    typer.Option(
        "--on-conflict",
        help="A merge conflict fails its task (naming the files), or becomes a debugging task.",
    ),
]


def _agent_options(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _workspace(repo: str, job_id: str) -> Workspace:
    return Workspace(repo, job_id, data_dir=state.settings().workers.data_dir)


def _check_repo(repo: str) -> str:
    """The repository as the job records it: a checkout's absolute path, or the remote's URL (whose
    default branch must have a commit; a first use clones it into this machine's cache)."""
    ws = _workspace(repo, "check")
    try:
        ws.start_commit_sync()
    except GitError as exc:
        if ws.url is None:
            raise ConfigError(f"--repo {repo}: not a git repository with at least one commit") from exc
        raise ConfigError(f"--repo {ws.shown}: {exc}") from exc
    return ws.url or str(ws.repo)


def _repo_files(repo: str) -> str:
    """The repository's files, one per line, for the planner."""
    ws = _workspace(repo, "check")
    if ws.url is not None:
        return ws.git("ls-tree", "-r", "--name-only", ws.start_commit_sync()).stdout
    return "\n".join(
        str(p.relative_to(ws.repo))
        for p in sorted(ws.repo.rglob("*"))
        if ".git" not in p.parts and p.is_file()
    )


def run(
    goal: Annotated[str | None, typer.Argument(help="What to do, in plain words.")] = None,
    repo: RepoOpt = ".",
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    workers: WorkersOpt = 2,
    max_rounds: RoundsOpt = None,
    max_subtasks: SubtasksOpt = 6,
    max_tokens: TokensOpt = None,
    test_command: TestOpt = None,
    chain: ChainOpt = False,
    on_conflict: ConflictOpt = OnConflict.FAIL,
    attach: Annotated[str | None, typer.Option("--attach", help="Continue an existing job instead.")] = None,
    live: LiveOpt = True,
) -> None:
    """Plan GOAL with the model, execute the plan on a local worker pool, merge it into helix/<job>."""
    if (goal is None) == (attach is None):
        raise ConfigError("give a GOAL, or --attach JOB to continue a job")
    if attach is None:
        assert goal is not None
        path = _check_repo(repo)
        opts = _agent_options(
            provider=provider,
            model=model,
            max_rounds=max_rounds,
            max_subtasks=max_subtasks,
            max_tokens=max_tokens,
            test_command=test_command,
            chain=chain or None,
            on_conflict=on_conflict.value if on_conflict is OnConflict.DEBUG else None,
        )
        spec = JobSpec(
            name=goal[:200],
            description=goal,
            tasks=[
                TaskSpec(
                    id="plan",
                    type=TaskType.PLANNING,
                    title=goal[:200],
                    description=goal,
                    run=AgentRun(agent=opts),
                )
            ],
        )
        job_id = _submit(spec, path)
    else:
        job_id = run_async(_resume_if_paused(attach))
    raise typer.Exit(_execute(job_id, workers, live))


def plan(
    goal: Annotated[str, typer.Argument(help="What to do, in plain words.", show_default=False)],
    repo: RepoOpt = ".",
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    workers: WorkersOpt = 2,
    max_subtasks: SubtasksOpt = 6,
    max_rounds: RoundsOpt = None,
    max_tokens: TokensOpt = None,
    test_command: TestOpt = None,
    on_conflict: ConflictOpt = OnConflict.FAIL,
    approve: Annotated[bool, typer.Option("--approve", help="Run the plan after showing it.")] = False,
    live: LiveOpt = True,
) -> None:
    """Ask the model for a plan and show its graph; `--approve` runs it as a job."""
    from helixcode.agent.planning import ask_for_plan
    from helixcode.llm.registry import build_manager

    path = _check_repo(repo)

    async def ask() -> Any:
        async with build_manager(state.settings()) as llm:

            async def chat(request: Any) -> Any:
                from dataclasses import replace

                return await llm.chat(replace(request, model=model) if model else request, provider=provider)

            files = _repo_files(path)[:2000]
            return await ask_for_plan(
                chat, goal, files, max_subtasks=max_subtasks, max_tokens=max(400, 100 * max_subtasks)
            )

    with console.status("asking the model for a plan..."):
        result = run_async(ask())
    console.print(_plan_table(result.subtasks, goal))
    if result.faults_repaired:
        console.print(f"[yellow]repaired after:[/] {'; '.join(result.faults_repaired)}")
    if not approve:
        console.print("Run it with `--approve`, or `helix run GOAL` to plan and run in one go.")
        return
    opts = _agent_options(
        provider=provider,
        model=model,
        max_rounds=max_rounds,
        max_tokens=max_tokens,
        test_command=test_command,
        on_conflict=on_conflict.value if on_conflict is OnConflict.DEBUG else None,
    )
    tasks = [t.model_copy(update={"run": AgentRun(agent={**opts, **t.run.agent})}) for t in result.subtasks]
    job_id = _submit(JobSpec(name=goal[:200], description=goal, tasks=tasks), path)
    raise typer.Exit(_execute(job_id, workers, live))


def _plan_table(subtasks: Sequence[TaskSpec], goal: str) -> Table:
    table = Table(title=f"Plan: {goal[:80]}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "type", "title", "depends on"):
        table.add_column(col)
    for s in subtasks:
        table.add_row(s.id, s.type.value, s.title, ", ".join(s.depends_on) or "-")
    return table


def _submit(spec: JobSpec, repo: str) -> str:
    async def go() -> str:
        store = await Store.open(state.settings())
        try:
            job = await TaskManager(store).submit(spec, workdir=repo)
        finally:
            await store.aclose()
        await _workspace(repo, job.id).ensure_base()
        return job.id

    job_id = run_async(go())
    shown = _workspace(repo, job_id).shown
    console.print(
        f"Job [bold]{job_id}[/] on {shown}; its work lands on branch [bold]{job_branch(job_id)}[/]."
    )
    return job_id


async def _resume_if_paused(ref: str) -> str:
    store = await Store.open(state.settings())
    try:
        manager = TaskManager(store)
        job_id = await manager.resolve(ref)
        if (await manager.summary(job_id)).job.status is JobStatus.PAUSED:
            await manager.resume(job_id)
        return job_id
    finally:
        await store.aclose()


# -- the pool and the live view ---------------------------------------------------------------


class Pool:
    """`helix worker --exit-when-idle` processes, each in its own session (Ctrl-C is ours to handle)."""

    def __init__(self, n: int, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["HELIX_DATABASE_URL"] = state.settings().database.url
        if state.config_path is not None:
            env["HELIX_CONFIG"] = str(state.config_path)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [log_dir / f"worker-{i + 1}.log" for i in range(n)]
        for i, log in enumerate(self.logs):
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
            with log.open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                )

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

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


def _execute(job_id: str, workers: int, live: bool) -> int:
    log_dir = Path(".helix") / "logs" / job_id
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
    store = await Store.open(state.settings())
    try:
        with contextlib.suppress(Exception):
            await TaskManager(store).pause(job_id, "interrupted (Ctrl-C)")
    finally:
        await store.aclose()


async def _watch(job_id: str, pool: Pool, live: bool) -> JobStatus:
    store = await Store.open(state.settings())
    manager = TaskManager(store)
    cursor = 0
    recent: list[Event] = []
    started = time.monotonic()
    try:
        with (
            Live(console=console, refresh_per_second=4, transient=False)
            if live
            else contextlib.nullcontext() as view
        ):
            while True:
                events = await manager.events(job_id, cursor)
                if events:
                    cursor = events[-1].id
                    recent = (recent + events)[-6:]
                    if not live:
                        for e in events:
                            console.print(event_line(e))
                summary = await manager.summary(job_id)
                if view is not None:
                    tasks = await store.list_tasks(job_id)
                    outputs = await store.task_outputs(job_id)
                    view.update(
                        _view(summary, tasks, outputs, recent, time.monotonic() - started, pool.alive())
                    )
                if summary.job.status.terminal:
                    break
                if pool.alive() == 0 and not await store.has_work(["git", "llm"]):
                    break
                if pool.alive() == 0 and summary.job.status is JobStatus.PAUSED:
                    break
                await asyncio.sleep(0.5 if events else 1.0)
        tasks = await store.list_tasks(job_id)
        outputs = await store.task_outputs(job_id)
        console.print(_final_table(tasks, outputs))
        console.print(
            f"Job {job_id}: {status_text(summary.job.status.value)}. Inspect the work: "
            f"git log --graph {job_branch(job_id)}"
        )
        if summary.job.pause_reason:
            console.print(f"paused because: {summary.job.pause_reason}")
        return summary.job.status
    finally:
        await store.aclose()


def _depth(task: Task, by_key: dict[str, Task]) -> int:
    depth, parent = 0, task.parent_key
    while parent and parent in by_key:
        depth, parent = depth + 1, by_key[parent].parent_key
    return depth


def _tree(tasks: list[Task]) -> list[tuple[Task, int]]:
    by_key = {t.key: t for t in tasks}
    children: dict[str | None, list[Task]] = {}
    for t in tasks:
        children.setdefault(t.parent_key, []).append(t)
    out: list[tuple[Task, int]] = []

    def walk(parent: str | None) -> None:
        for t in children.get(parent, []):
            out.append((t, _depth(t, by_key)))
            walk(t.key)

    walk(None)
    return out


def _elapsed(t: Task) -> str:
    if t.started_at is None:
        return "-"
    end = t.finished_at or time.time()
    return f"{max(0.0, end - t.started_at):.0f}s"


def _view(
    summary: Any,
    tasks: list[Task],
    outputs: dict[str, dict[str, Any]],
    recent: list[Event],
    elapsed: float,
    alive: int,
) -> Group:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{summary.job.name[:70]}")
    for col in ("task", "type", "status", "tries", "progress", "tokens", "time"):
        table.add_column(col, no_wrap=True)
    table.add_column("now", overflow="ellipsis", no_wrap=True, max_width=40)
    for t, depth in _tree(tasks):
        out = outputs.get(t.key, {})
        done = 1.0 if t.status.value in ("succeeded", "skipped") else t.progress
        table.add_row(
            "  " * depth + t.key,
            t.type.value,
            Text(t.status.value, style=STATUS_STYLE.get(t.status.value, "")),
            str(t.attempts),
            f"{_bar(done, 10)} {done:4.0%}",
            str(out.get("tokens", "-")),
            _elapsed(t),
            (t.last_error or t.progress_message or out.get("summary") or "")[:80],
        )
    head = Text(
        f"job {summary.job.id}  {summary.job.status.value}  {_bar(summary.progress, 24)} "
        f"{summary.progress:4.0%}  workers {alive}  {elapsed:.0f}s"
    )
    lines = [event_line(e) for e in recent]
    return Group(head, table, *lines)


def _final_table(tasks: list[Task], outputs: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Summary", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("task", "outcome", "duration", "tokens", "rounds", "commit"):
        table.add_column(col, no_wrap=True)
    table.add_column("summary", overflow="ellipsis", no_wrap=True, max_width=50)
    for t, depth in _tree(tasks):
        out = outputs.get(t.key, {})
        duration = f"{t.finished_at - t.started_at:.0f}s" if t.finished_at and t.started_at else "-"
        outcome = t.status.value + (
            f" ({out['stop_reason']})" if out.get("stop_reason") not in (None, "finished") else ""
        )
        table.add_row(
            "  " * depth + t.key,
            outcome,
            duration,
            str(out.get("tokens", "-")),
            str(out.get("rounds", "-")),
            str(out.get("commit") or "-")[:10],
            (t.last_error or out.get("summary") or "")[:80],
        )
    return table


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(plan)
