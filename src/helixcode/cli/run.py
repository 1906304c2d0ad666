"""The main workflows: `helix run GOAL` and `helix plan GOAL`.

`helix run` creates the job (one planning task whose subtasks are inserted when it has planned), starts
a local pool of worker processes (`helix worker --exit-when-idle`, one task each) and shows the task tree
live until the job ends (``cli.workflow``: the pool, Ctrl-C, the view).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from helixcode.cli.common import console, run_async, state
from helixcode.cli.workflow import (
    LiveOpt,
    ModelOpt,
    ProviderOpt,
    RepoOpt,
    RoundsOpt,
    TokensOpt,
    WorkersOpt,
    agent_options,
    check_repo,
    check_sandbox,
    execute,
    submit,
    workspace_for,
)
from helixcode.domain.enums import JobStatus, TaskType
from helixcode.domain.plan import AgentRun, JobSpec, TaskSpec
from helixcode.engine.manager import TaskManager
from helixcode.errors import ConfigError
from helixcode.store.store import Store

__all__ = ["register"]

SubtasksOpt = Annotated[int, typer.Option("--max-subtasks", min=1, max=20, help="Subtasks a plan may have.")]
TestOpt = Annotated[str | None, typer.Option("--test-command", help="How to run the project's tests.")]
ChainOpt = Annotated[bool, typer.Option("--chain", help="Run the planned subtasks one after another.")]


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


def _repo_files(repo: str) -> str:
    """The repository's files, one per line, for the planner."""
    ws = workspace_for(repo, "check")
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
        path = check_repo(repo)
        check_sandbox()
        opts = agent_options(
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
        job_id = submit(spec, path)
    else:
        job_id = run_async(_resume_if_paused(attach))
    raise typer.Exit(execute(job_id, workers, live))


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
    from helixcode.worker.capabilities import detect_capabilities, llm_capabilities, sandbox_probe

    path = check_repo(repo)

    async def ask() -> Any:
        async with build_manager(state.settings()) as llm:

            async def chat(request: Any) -> Any:
                from dataclasses import replace

                return await llm.chat(replace(request, model=model) if model else request, provider=provider)

            files = _repo_files(path)[:2000]
            # The plan runs on this machine's pool: its workers offer what this machine does.
            settings = state.settings()
            offered = [
                *detect_capabilities(),
                *llm_capabilities(settings),
                *sandbox_probe(settings).capabilities(),
            ]
            return await ask_for_plan(
                chat,
                goal,
                files,
                max_subtasks=max_subtasks,
                max_tokens=max(400, 100 * max_subtasks),
                capabilities=offered,
            )

    with console.status("asking the model for a plan..."):
        result = run_async(ask())
    console.print(_plan_table(result.subtasks, goal))
    if result.faults_repaired:
        console.print(f"[yellow]repaired after:[/] {'; '.join(result.faults_repaired)}")
    if not approve:
        console.print("Run it with `--approve`, or `helix run GOAL` to plan and run in one go.")
        return
    check_sandbox()
    opts = agent_options(
        provider=provider,
        model=model,
        max_rounds=max_rounds,
        max_tokens=max_tokens,
        test_command=test_command,
        on_conflict=on_conflict.value if on_conflict is OnConflict.DEBUG else None,
    )
    tasks = [t.model_copy(update={"run": AgentRun(agent={**opts, **t.run.agent})}) for t in result.subtasks]
    job_id = submit(JobSpec(name=goal[:200], description=goal, tasks=tasks), path)
    raise typer.Exit(execute(job_id, workers, live))


def _plan_table(subtasks: Sequence[TaskSpec], goal: str) -> Table:
    table = Table(title=f"Plan: {goal[:80]}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "type", "title", "depends on"):
        table.add_column(col)
    for s in subtasks:
        table.add_row(s.id, s.type.value, s.title, ", ".join(s.depends_on) or "-")
    return table


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


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(plan)
