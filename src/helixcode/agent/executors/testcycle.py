"""A test cycle's test run: the project's tests in the task's own worktree, then what follows.

One attempt::

    worktree on helix/tasks/<job>/<task>  (from its dependencies' branches: a re-test starts from the
                                           debugging task it depends on; the first run from the base)
    run the test command (the payload's, or the one detected in the worktree; a split part's items
    appended as arguments), release the worktree
    passed                 -> succeed with the counts
    failed, rounds remain  -> expand into a debugging task + a re-test (one transaction, fenced by
                              this attempt's lease), like a planner; this task waits for them
    failed, last round     -> fail for good, naming the command and the counts

Nothing is committed: a test run does not change the code, and files the tests leave behind
(caches, reports) must not reach the job's branch. What ``domain.testcycle`` decides is pure; this
module only runs the command and records the outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from helixcode.agent.executors.agent import TEST_TIMEOUT, detect_test_command, parse_test_counts
from helixcode.agent.executors.base import AlreadyReported, TaskContext
from helixcode.agent.services import AgentServices, services_for
from helixcode.agent.task_inputs import task_inputs
from helixcode.agent.tools import command_result
from helixcode.agent.workspace import MergeConflict, Workspace
from helixcode.domain.runs import TestCycleOptions, TestCycleRun
from helixcode.domain.testcycle import TestCycleOutcome, next_round, suite_command, verdict
from helixcode.errors import PlanError, TaskFailed
from helixcode.store.expand import child_key

__all__ = ["TestCycleExecutor"]

#: Characters of the command's output kept beyond what a debugging task is given.
OUTPUT_LIMIT = 4000


class TestCycleExecutor:
    __test__: ClassVar[bool] = False  # a test cycle's part, not a pytest test class

    async def execute(self, ctx: TaskContext) -> dict[str, Any]:
        if not ctx.workdir:
            raise TaskFailed("a test run needs a repository: the job has no workdir", retryable=False)
        options = ctx.run_as(TestCycleRun).tests
        services = await services_for(ctx.database_url)
        store = services.store
        outcome, commit = await self._run_tests(ctx, services, options)
        summary = verdict(options, outcome)
        output: dict[str, object] = {
            "summary": summary,
            "tests": outcome.to_json(),
            "cycle": {"round": options.round, "rounds": options.rounds},
            "commit": commit,
        }
        if outcome.passed:
            return output
        follow = next_round(options, outcome)
        if not follow:
            raise TaskFailed(summary, retryable=False, output=output)
        fix, retest = (child_key(ctx.task.key, spec.id) for spec in follow)
        output["summary"] = f"{summary}; debugging in {fix}, then {retest}"
        try:
            await store.expand_task(ctx.task.id, ctx.token, follow, output)
        except PlanError as exc:
            raise TaskFailed(
                f"{summary}; no further round is possible: {exc}", retryable=False, output=output
            ) from exc
        raise AlreadyReported(str(output["summary"]))

    @staticmethod
    async def _run_tests(
        ctx: TaskContext, services: AgentServices, options: TestCycleOptions
    ) -> tuple[TestCycleOutcome, str]:
        """Run the tests on the task's branch, in the worker's sandbox (the tests are code a model
        may have written); the outcome and the commit that was tested."""
        assert ctx.workdir is not None
        workspace = Workspace(ctx.workdir, ctx.task.job_id, data_dir=services.settings.workers.data_dir)
        sources, _ = await task_inputs(services.store, ctx.task)
        try:
            tws = await workspace.prepare(ctx.task.key, sources)
        except MergeConflict as exc:
            raise TaskFailed(str(exc), retryable=False, output={"conflicts": exc.files}) from exc
        try:
            command = suite_command(options, None if options.command else detect_test_command(tws.path))
            if command is None:
                raise TaskFailed(
                    "no test command: none was given and none was found (a Makefile with a test "
                    "target, or test*.py files at the top or under tests/)",
                    retryable=False,
                )
            await ctx.report_progress(0.1, f"round {options.round}: {command}")
            limit = max(OUTPUT_LIMIT, options.output_chars + 200)
            result = command_result(
                await services.sandbox.run(
                    command,
                    worktree=tws.path,
                    git_dir=workspace.common_dir,
                    timeout=ctx.task.timeout or TEST_TIMEOUT,
                    output_limit=limit,
                    network=options.network,
                )
            )
            commit = await asyncio.to_thread(workspace.head_sync, tws)
        finally:
            await workspace.release(tws)
        outcome = TestCycleOutcome(
            command=command,
            exit_code=result.data["exit_code"],
            output=result.content,
            counts=parse_test_counts(result.content),
            timed_out=bool(result.data["timed_out"]),
        )
        return outcome, commit
