"""What a task needs from a model, from its type and its ``requires``, as the manager's ``Requirements``.

The manager filters on capabilities and ranks what is left; this module only says what each task asks
for, so the rule per task type lives in one place:

- ``planning``: JSON-schema output, and the largest window available (the planner reads the repository's
  file listing and writes the whole plan in one reply);
- a type whose profile works through tools (building, testing, debugging, design, diagram, ...): tool
  calls. Every type but planning edits the worktree through tools, a diagram included (it writes its
  ``.mmd`` file with ``write_file``), so a model without tool support is skipped for them;
- ``model:NAME`` in ``requires``: one of those models. A worker advertises ``model:NAME`` only for models
  its providers serve, so the claim and the call agree on the name;
- an explicit model (``--model``, ``run: {agent: {model: ...}}``) replaces those pins.

``--provider`` is not a need: it goes to the manager as is and narrows the pool to that provider.

    model_needs(TaskType.PLANNING)            # Requirements(json_schema=True, largest_context=True)
    model_needs(TaskType.BUILDING, ["git", "model:qwen2.5-coder"])   # tools, pinned to qwen2.5-coder
"""

from __future__ import annotations

from collections.abc import Iterable

from helixcode.agent.prompts import PROFILES
from helixcode.domain.enums import TaskType
from helixcode.llm.policy import Requirements

__all__ = ["MODEL_PREFIX", "model_needs", "pinned_models"]

MODEL_PREFIX = "model:"


def pinned_models(requires: Iterable[str]) -> tuple[str, ...]:
    """The model names a task's ``requires`` pins (``model:NAME``), in order, each once."""
    names = (r.removeprefix(MODEL_PREFIX).strip() for r in requires if r.startswith(MODEL_PREFIX))
    return tuple(dict.fromkeys(n for n in names if n))


def model_needs(
    task_type: TaskType, requires: Iterable[str] = (), *, model: str | None = None
) -> Requirements:
    """The requirements for every model call of a task of ``task_type``; ``model`` overrides the pins."""
    planning = task_type is TaskType.PLANNING
    return Requirements(
        tools=bool(PROFILES[task_type].tools),
        json_schema=planning,
        models=(model,) if model else pinned_models(requires),
        largest_context=planning,
    )
