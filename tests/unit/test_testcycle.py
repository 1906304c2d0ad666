"""The test cycle's decisions (no I/O): what a failed run adds, the round limit, the messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from helixcode.domain.enums import TaskType
from helixcode.domain.plan import MAX_TEST_ROUNDS, AgentRun, TestCycleOptions, TestCycleRun, parse_plan
from helixcode.domain.testcycle import TestCycleOutcome, counts_text, next_round, verdict
from helixcode.store.expand import KEY_LIMIT, child_key

FAILED = TestCycleOutcome(
    "pytest -q",
    1,
    "E   assert 1 == 2\n" + "x" * 5000 + "\n1 failed, 2 passed in 0.1s",
    {"failed": 1, "passed": 2},
)
PASSED = TestCycleOutcome("pytest -q", 0, "3 passed in 0.1s", {"passed": 3})


def test_testcycle_a_failed_run_adds_a_debugging_task_and_a_retest() -> None:
    options = TestCycleOptions(rounds=2, agent={"model": "m", "max_rounds": 4}, output_chars=300)
    fix, retest = next_round(options, FAILED)
    assert (fix.id, fix.type, fix.depends_on) == ("fix1", TaskType.DEBUGGING, [])
    assert fix.requires == ["git", "llm", "sandbox"]
    assert isinstance(fix.run, AgentRun)
    # The debugging task is told the exact command; the re-test, not the task itself, runs it.
    assert fix.run.agent.model_dump() == {
        "model": "m",
        "max_rounds": 4,
        "test_command": "pytest -q",
        "verify": False,
    }
    assert "pytest -q" in fix.description
    assert "1 failed, 2 passed" in fix.description
    assert fix.description.endswith("1 failed, 2 passed in 0.1s")  # the tail of the output, cut
    assert "characters cut" in fix.description
    assert len(fix.description) < 700
    assert (retest.id, retest.type, retest.depends_on) == ("test2", TaskType.TESTING, ["fix1"])
    assert retest.requires == ["git", "sandbox"]
    assert isinstance(retest.run, TestCycleRun)
    assert retest.run.tests.round == 2
    assert retest.run.tests.rounds == 2
    assert retest.run.tests.command == "pytest -q"  # pinned: every round runs what the first one ran
    assert retest.run.tests.agent == options.agent


def test_testcycle_ends_when_the_tests_pass_or_the_rounds_are_spent() -> None:
    assert next_round(TestCycleOptions(rounds=3), PASSED) == []
    assert next_round(TestCycleOptions(rounds=0), FAILED) == []
    assert next_round(TestCycleOptions(rounds=2, round=3), FAILED) == []
    assert [s.id for s in next_round(TestCycleOptions(rounds=2, round=2), FAILED)] == ["fix2", "test3"]


def test_testcycle_messages_name_the_command_and_the_counts() -> None:
    assert verdict(TestCycleOptions(), PASSED) == "tests pass in round 1 (3 passed): pytest -q"
    assert (
        verdict(TestCycleOptions(rounds=1), FAILED) == "tests fail in round 1 (1 failed, 2 passed): pytest -q"
    )
    assert (
        verdict(TestCycleOptions(rounds=1, round=2), FAILED)
        == "tests still failing after 1 debugging round (1 failed, 2 passed): pytest -q"
    )
    assert verdict(TestCycleOptions(rounds=3, round=4), FAILED).startswith(
        "tests still failing after 3 debugging rounds"
    )
    assert (
        verdict(TestCycleOptions(rounds=0), FAILED) == "tests still failing (1 failed, 2 passed): pytest -q"
    )
    assert counts_text(TestCycleOutcome("make test", 2, "boom")) == "exit code 2"
    assert counts_text(TestCycleOutcome("make test", None, "", timed_out=True)) == "timed out"
    assert not TestCycleOutcome("make test", 0, "", timed_out=True).passed


def test_testcycle_the_deepest_round_keeps_keys_within_the_limit() -> None:
    options = TestCycleOptions(rounds=MAX_TEST_ROUNDS)
    key = "test"
    while follow := next_round(options, FAILED):
        fix, retest = follow
        assert len(child_key(key, fix.id)) <= KEY_LIMIT
        key = child_key(key, retest.id)
        assert len(key) <= KEY_LIMIT
        assert isinstance(retest.run, TestCycleRun)
        options = retest.run.tests
    assert options.round == MAX_TEST_ROUNDS + 1


def test_testcycle_options_in_a_plan_file() -> None:
    spec = parse_plan(
        {"tasks": [{"id": "t", "type": "testing", "title": "t", "run": {"tests": {"command": "make test"}}}]}
    )
    [task] = spec.tasks
    assert isinstance(task.run, TestCycleRun)
    assert task.run.tests.rounds == 3
    assert task.requires == ["git", "sandbox"]
    with pytest.raises(ValidationError, match="past the last one"):
        TestCycleOptions(rounds=1, round=3)
    with pytest.raises(ValidationError):
        TestCycleOptions(rounds=MAX_TEST_ROUNDS + 1)
    with pytest.raises(ValidationError):
        TestCycleOptions.model_validate({"command": "x", "colour": "red"})
