"""`helix test`: run a repository's tests; on failure, debug and re-test, up to N rounds, durably.

The whole cycle is tasks in the database (``domain.testcycle``): the job starts as one test run, and a
failing run adds a debugging task and the next test run under itself, so `helix status`, `helix tasks`
and `helix events` show every round, and a crash at any point loses nothing. The fixes land on the
job's branch, `helix/<job>`, like any agent task's work; the user's checkout is never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from helixcode.cli.common import console, err_console
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
)
from helixcode.errors import ConfigError

__all__ = ["MAX_TEST_ROUNDS", "register"]

#: ``domain.plan.MAX_TEST_ROUNDS``, repeated so that `helix --help` need not load the plan models (a
#: test checks that the two agree).
MAX_TEST_ROUNDS = 8


def run_tests(
    repo: RepoOpt = ".",
    command: Annotated[
        str | None,
        typer.Option("--command", help="How to run the tests (default: `make test`, pytest or unittest)."),
    ] = None,
    rounds: Annotated[
        int,
        typer.Option(
            "--debug-rounds",
            "--rounds",
            min=0,
            max=MAX_TEST_ROUNDS,
            help="Debug-and-re-test rounds after a failure (0: only test).",
        ),
    ] = 3,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    workers: WorkersOpt = 1,
    max_rounds: RoundsOpt = None,
    max_tokens: TokensOpt = None,
    live: LiveOpt = True,
) -> None:
    """Run the tests; on failure debug and re-test, up to --debug-rounds times. Fixes land on helix/<job>."""
    from helixcode.domain.enums import TaskType
    from helixcode.domain.plan import JobSpec, TaskSpec, TestCycleOptions, TestCycleRun

    checked = check_repo(repo)
    check_sandbox()
    local = Path(checked).is_dir()
    if not local and command is None:
        raise ConfigError(f"--repo {repo}: a remote repository needs --command (detection reads a checkout)")
    path = Path(checked)
    shown = command or _detected(path)
    if local:
        _warn_uncommitted(path)
    options = TestCycleOptions(
        command=command,
        rounds=rounds,
        agent=agent_options(provider=provider, model=model, max_rounds=max_rounds, max_tokens=max_tokens),
    )
    first = TaskSpec.model_validate(
        {
            "id": "test",
            "type": TaskType.TESTING,
            "title": "Run the tests",
            "description": f"Run `{shown}`; debug failures, up to {rounds} rounds.",
            "run": TestCycleRun(tests=options),
        }
    )
    job_id = submit(JobSpec(name=f"test {path.name}", description=first.description, tasks=[first]), checked)
    console.print(
        f"Tests: [bold]{shown}[/]{' (detected)' if command is None else ''}; "
        f"up to {rounds} debugging round{'s' if rounds != 1 else ''}.",
        highlight=False,
    )
    raise typer.Exit(execute(job_id, workers, live))


def _detected(path: Path) -> str:
    from helixcode.agent.executors.agent import detect_test_command  # lazy: it loads the agent layer

    found = detect_test_command(path)
    if found is None:
        raise ConfigError(
            f"--repo {path}: no test command found (a Makefile with a test target, or test*.py files at "
            "the top or under tests/); give one with --command"
        )
    return found


def _warn_uncommitted(path: Path) -> None:
    """The job starts from the last commit: say so when the checkout has changes it will not see."""
    from helixcode.agent.workspace import Workspace

    ws = Workspace(path, "check")
    if ws.git("status", "--porcelain", check=False).stdout.strip():
        head = (ws.rev("HEAD") or "")[:10]
        err_console.print(
            f"note: {path} has uncommitted changes; helix tests its last commit ({head}).", highlight=False
        )


def register(app: typer.Typer) -> None:
    app.command("test", rich_help_panel="Work")(run_tests)
