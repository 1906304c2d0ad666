"""The agent's prompt profiles: one for every task type (a missing one would be a KeyError mid-run)."""

from __future__ import annotations

import pytest

from helixcode.agent.prompts import PROFILES, system_prompt
from helixcode.domain.enums import TaskType


def test_every_task_type_has_a_prompt_profile() -> None:
    assert set(PROFILES) == set(TaskType)


@pytest.mark.parametrize("task_type", list(TaskType))
def test_each_profile_gives_instructions_and_a_round_limit(task_type: TaskType) -> None:
    profile = PROFILES[task_type]
    assert profile.instructions.strip()
    assert profile.instructions in system_prompt(task_type)
    assert profile.max_rounds >= 1
    if task_type is not TaskType.PLANNING:  # the planner answers with JSON, not tools
        assert "finish" in profile.tools
