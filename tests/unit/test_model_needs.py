"""What each task type asks of a model, from its type, its ``requires`` and an explicit model."""

from __future__ import annotations

import pytest

from helixcode.agent.model_needs import model_needs, pinned_models
from helixcode.domain.enums import TaskType
from helixcode.llm.policy import Requirements

TOOL_TYPES = [t for t in TaskType if t is not TaskType.PLANNING]


def test_planning_wants_schema_output_and_the_largest_window_but_no_tools() -> None:
    assert model_needs(TaskType.PLANNING) == Requirements(json_schema=True, largest_context=True)


@pytest.mark.parametrize("task_type", TOOL_TYPES, ids=str)
def test_every_other_type_works_through_tools(task_type: TaskType) -> None:
    assert model_needs(task_type) == Requirements(tools=True)


@pytest.mark.parametrize("task_type", list(TaskType), ids=str)
def test_model_pins_come_from_requires(task_type: TaskType) -> None:
    needs = model_needs(task_type, ["git", "llm", "model:qwen2.5-coder", "gpu"])
    assert needs.models == ("qwen2.5-coder",)
    assert needs.tools == (task_type is not TaskType.PLANNING)


def test_an_explicit_model_overrides_the_pins() -> None:
    needs = model_needs(TaskType.BUILDING, ["model:a", "model:b"], model="gpt-4o-mini")
    assert needs.models == ("gpt-4o-mini",)
    assert model_needs(TaskType.BUILDING, ["model:a"], model=None).models == ("a",)
    assert model_needs(TaskType.BUILDING, ["model:a"], model="").models == ("a",)


def test_pinned_models() -> None:
    assert pinned_models(["model:a", "model:b", "model:a"]) == ("a", "b")
    assert pinned_models(["model:", "model: ", "models:x", "llm", "git"]) == ()
    assert pinned_models(["model:/models/q.gguf", "model:llama3.2:latest"]) == (
        "/models/q.gguf",
        "llama3.2:latest",
    )
    assert pinned_models([]) == ()
