"""The test cycle's decisions, without I/O: what a test run's outcome leads to.

A test run (a task whose run is ``{tests: {...}}``) that passes ends the cycle. One that fails, while
rounds remain, becomes the parent of two new tasks::

    test                      round 1: the tests fail
      test.fix1    debugging  an agent task told the command and the failure output's tail
      test.test2   testing    round 2: the tests again, on fix1's branch (depends on fix1)
        ...

and one that fails in the last round fails for good, with a message naming the command and the
counts. The round number travels in the task's own payload, so the count survives any crash.

A split test run (``helix split`` of a ``tests`` task) runs only its items: they are appended to the
test command as arguments, shell-quoted (``pytest -q tests/test_a.py tests/test_b.py``), and its
debugging task and re-test run that same command.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from helixcode.domain.enums import TaskType
from helixcode.domain.plan import AgentRun, TaskSpec, TestCycleOptions, TestCycleRun

__all__ = ["TestCycleOutcome", "counts_text", "debug_description", "next_round", "suite_command", "verdict"]


@dataclass(frozen=True, slots=True)
class TestCycleOutcome:
    """What one run of the test command gave."""

    __test__: ClassVar[bool] = False  # a test cycle's part, not a pytest test class

    command: str
    exit_code: int | None
    output: str
    counts: Mapping[str, int] = field(default_factory=dict)
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_json(self, output_chars: int = 2000) -> dict[str, Any]:
        """The shape agent tasks report their tests in (``tests`` in a task's output)."""
        return {
            "command": self.command,
            **self.counts,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "passed_ok": self.passed,
            "output": tail(self.output, output_chars),
        }


def suite_command(options: TestCycleOptions, detected: str | None = None) -> str | None:
    """The command a test run runs: its own (else ``detected``), with a split part's items appended
    as arguments. None when there is no command at all."""
    command = options.command or detected
    if command is None or not options.items:
        return command
    return " ".join([command, *(shlex.quote(item) for item in options.items)])


def counts_text(outcome: TestCycleOutcome) -> str:
    """``3 failed, 5 passed``; the exit code (or the timeout) when the output had no summary line."""
    if outcome.timed_out:
        return "timed out"
    kinds = ("failed", "errors", "passed", "skipped")
    parts = [f"{outcome.counts[k]} {k}" for k in kinds if k in outcome.counts]
    return ", ".join(parts) or f"exit code {outcome.exit_code}"


def tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"... ({len(text) - limit} characters cut)\n" + text[-limit:]


def verdict(options: TestCycleOptions, outcome: TestCycleOutcome) -> str:
    """The one-line summary of a test run (the task's summary, or its failure message), counts first
    so that a narrow table still shows them."""
    counts = counts_text(outcome)
    if outcome.passed:
        return f"tests pass in round {options.round} ({counts}): {outcome.command}"
    if options.round > options.rounds:
        rounds = f"{options.rounds} debugging round{'s' if options.rounds != 1 else ''}"
        after = f" after {rounds}" if options.rounds else ""
        return f"tests still failing{after} ({counts}): {outcome.command}"
    return f"tests fail in round {options.round} ({counts}): {outcome.command}"


def debug_description(options: TestCycleOptions, outcome: TestCycleOutcome) -> str:
    return (
        f"The test command `{outcome.command}` failed ({counts_text(outcome)}). Find the cause in the "
        "code and fix it; change a test only if the test itself is wrong. The test command runs again "
        f"after you finish.\n\nIts output:\n{tail(outcome.output.strip(), options.output_chars)}"
    )


def next_round(options: TestCycleOptions, outcome: TestCycleOutcome) -> list[TaskSpec]:
    """The debugging task and the re-test that follow a failed run; empty when the cycle is over
    (the tests passed, or this was the last round)."""
    if outcome.passed or options.round > options.rounds:
        return []
    r = options.round
    agent = options.agent.merged(test_command=outcome.command, verify=False)
    if options.network is not None and "network" not in agent.model_fields_set:
        agent = agent.merged(network=options.network)  # the fix's commands: the tests' network rule
    fix = TaskSpec.model_validate(
        {
            "id": f"fix{r}",
            "type": TaskType.DEBUGGING,
            "title": f"Fix the failing tests (round {r} of {options.rounds})",
            "description": debug_description(options, outcome),
            "run": AgentRun(agent=agent),
        }
    )
    retest = TaskSpec.model_validate(
        {
            "id": f"test{r + 1}",
            "type": TaskType.TESTING,
            "title": f"Run the tests again (round {r + 1})",
            "depends_on": [fix.id],
            # The command as run: a split part's items are in it already.
            "run": TestCycleRun(
                tests=options.model_copy(update={"round": r + 1, "command": outcome.command, "items": None})
            ),
        }
    )
    return [fix, retest]
