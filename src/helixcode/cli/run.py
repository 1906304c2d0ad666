"""The main workflows: `helix run GOAL` and `helix plan GOAL`.

`helix run` creates the job (one planning task whose subtasks are inserted when it has planned), starts
a local pool of worker processes (`helix worker --exit-when-idle`, one task each) and shows the task tree
live until the job ends (``cli.workflow``: the pool, Ctrl-C, the view).

On the embedded defaults (no provider configured, so the tiny in-process model is the only one) it
applies ``EMBEDDED_LIMITS``, the limits `make demo` runs with, unless the command line gives them: that
model plans long chains of many-round subtasks at about 20 s a round on 2 cores, and a newcomer's first
job should end in minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from helixcode.cli.common import console, err_console, open_engine, run_async, state
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
from helixcode.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from helixcode.config import Settings
    from helixcode.domain.plan import TaskSpec

__all__ = ["EMBEDDED_LIMITS", "embedded_only", "register", "with_embedded_limits"]

#: Subtasks a plan may have unless told otherwise.
MAX_SUBTASKS = 6
#: What `helix run` (and so `make demo`) uses on the embedded model unless the command line says
#: otherwise: small plans and rounds keep a job to a few minutes on 2 cores, and the subtasks run one
#: after another, because that model gives every subtask the same file names and parallel siblings
#: would conflict.
EMBEDDED_LIMITS: dict[str, Any] = {"max_subtasks": 3, "max_rounds": 2, "max_tokens": 160, "chain": True}

SubtasksOpt = Annotated[
    int | None,
    typer.Option(
        "--max-subtasks", min=1, max=20, help=f"Subtasks a plan may have (default: {MAX_SUBTASKS})."
    ),
]
TestOpt = Annotated[str | None, typer.Option("--test-command", help="How to run the project's tests.")]
ChainOpt = Annotated[
    bool | None,
    typer.Option(
        "--chain/--no-chain", help="Run the planned subtasks one after another.", show_default=False
    ),
]


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


def embedded_only(settings: Settings) -> bool:
    """No provider is configured (or none enabled), so the embedded model is the only one."""
    return settings.llm.embedded and not any(p.enabled for p in settings.providers.values())


#: Options whose flag is not their name with dashes.
FLAGS = {"max_rounds": "--tool-rounds"}


def with_embedded_limits(given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The options with ``EMBEDDED_LIMITS`` filling those not given (None), and the flags that did::

    with_embedded_limits({"max_subtasks": 5, "max_rounds": None, "max_tokens": None, "chain": None})
    # ({"max_subtasks": 5, "max_rounds": 2, "max_tokens": 160, "chain": True},
    #  ["--tool-rounds 2", "--max-tokens 160", "--chain"])
    """
    options = dict(given)
    applied = []
    for name, value in EMBEDDED_LIMITS.items():
        if options.get(name) is None:
            options[name] = value
            flag = FLAGS.get(name) or "--" + name.replace("_", "-")
            applied.append(flag if value is True else f"{flag} {value}")
    return options, applied


def run(
    goal: Annotated[str | None, typer.Argument(help="What to do, in plain words.")] = None,
    repo: RepoOpt = ".",
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    workers: WorkersOpt = 2,
    max_rounds: RoundsOpt = None,
    max_subtasks: SubtasksOpt = None,
    max_tokens: TokensOpt = None,
    test_command: TestOpt = None,
    chain: ChainOpt = None,
    on_conflict: ConflictOpt = OnConflict.FAIL,
    attach: Annotated[str | None, typer.Option("--attach", help="Continue an existing job instead.")] = None,
    live: LiveOpt = True,
) -> None:
    """Plan GOAL with the model, execute the plan on a local worker pool, merge it into helix/<job>.

    On the embedded model (no provider configured) small limits apply unless given: --max-subtasks 3
    --tool-rounds 2 --max-tokens 160 --chain."""
    if (goal is None) == (attach is None):
        raise ConfigError("give a GOAL, or --attach JOB to continue a job")
    if attach is None:
        assert goal is not None
        from helixcode.domain.goals import goal_spec
        from helixcode.domain.plan import AgentRun

        path = check_repo(repo)
        check_sandbox()
        limits: dict[str, Any] = {
            "max_subtasks": max_subtasks,
            "max_rounds": max_rounds,
            "max_tokens": max_tokens,
            "chain": chain,
        }
        if embedded_only(state.settings()):
            limits, applied = with_embedded_limits(limits)
            if applied:
                err_console.print(
                    f"using the embedded model: small limits ({' '.join(applied)}); pass them to override",
                    highlight=False,
                    soft_wrap=True,
                )
        opts = agent_options(
            provider=provider,
            model=model,
            max_rounds=limits["max_rounds"],
            max_subtasks=limits["max_subtasks"] or MAX_SUBTASKS,
            max_tokens=limits["max_tokens"],
            test_command=test_command,
            chain=limits["chain"] or None,
            on_conflict=on_conflict.value if on_conflict is OnConflict.DEBUG else None,
        )
        spec = goal_spec(goal, run=AgentRun.model_validate({"agent": opts}))
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
    max_subtasks: SubtasksOpt = None,
    max_rounds: RoundsOpt = None,
    max_tokens: TokensOpt = None,
    test_command: TestOpt = None,
    on_conflict: ConflictOpt = OnConflict.FAIL,
    approve: Annotated[bool, typer.Option("--approve", help="Run the plan after showing it.")] = False,
    live: LiveOpt = True,
) -> None:
    """Ask the model for a plan and show its graph; `--approve` runs it as a job."""
    from helixcode.agent.planning import ask_for_plan
    from helixcode.domain.plan import AgentOptions, AgentRun, JobSpec
    from helixcode.llm.registry import build_manager
    from helixcode.worker.capabilities import detect_capabilities, llm_capabilities, sandbox_probe

    path = check_repo(repo)
    subtasks = max_subtasks or MAX_SUBTASKS

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
                max_subtasks=subtasks,
                max_tokens=max(400, 100 * subtasks),
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
    given = AgentOptions.model_validate(opts)  # a subtask's own options beat the command line's
    tasks = [t.model_copy(update={"run": AgentRun(agent=t.run.agent.under(given))}) for t in result.subtasks]
    job_id = submit(JobSpec(name=goal[:200], description=goal, tasks=tasks), path)
    raise typer.Exit(execute(job_id, workers, live))


def _plan_table(subtasks: Sequence[TaskSpec], goal: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=f"Plan: {goal[:80]}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "type", "title", "depends on"):
        table.add_column(col)
    for s in subtasks:
        table.add_row(s.id, s.type.value, s.title, ", ".join(s.depends_on) or "-")
    return table


async def _resume_if_paused(ref: str) -> str:
    from helixcode.domain.enums import JobStatus

    engine = await open_engine()
    try:
        manager = engine.jobs
        job_id = await manager.resolve(ref)
        if (await manager.summary(job_id)).job.status is JobStatus.PAUSED:
            await manager.resume(job_id)
        return job_id
    finally:
        await engine.aclose()


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel="Work")(run)
    app.command(rich_help_panel="Work")(plan)
