"""What the agent is told, per task type: its instructions, its default tools, its limits.

The prompts are short on purpose: the embedded model has a 2k-token window, and every tool spec costs
tokens too. A capable model needs little more than the task and the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from helixcode.domain.enums import TaskType

__all__ = ["PROFILES", "Profile", "system_prompt", "task_prompt"]

READ = ("list_files", "read_file", "search")
WRITE = (*READ, "write_file", "edit_file")
ALL = (*WRITE, "run_command", "report_progress", "finish")

COMMON = (
    "You are a software agent working inside a git repository, through tools only. Paths are relative "
    "to the repository root. Make small, focused changes. When the task is done, call finish with a "
    "one-line summary."
)


@dataclass(frozen=True, slots=True)
class Profile:
    instructions: str
    tools: tuple[str, ...]
    max_rounds: int = 8


PROFILES: dict[TaskType, Profile] = {
    TaskType.PLANNING: Profile(
        "Break the goal into a few concrete subtasks with dependencies. Reply with the plan as JSON only.",
        (),
    ),
    TaskType.DESIGN: Profile(
        "Write a short design note (a Markdown file under docs/) describing the approach.", (*WRITE, "finish")
    ),
    TaskType.BUILDING: Profile("Implement the change: write or edit the source files it needs.", ALL),
    TaskType.TESTING: Profile(
        "Write or update tests for the change. The project's test command runs after you finish.", ALL
    ),
    TaskType.REFACTORING: Profile("Restructure the code without changing its behaviour.", ALL),
    TaskType.DEBUGGING: Profile(
        "Find and fix the cause of the failure described below, then check it with the test command.", ALL
    ),
    TaskType.DIAGRAM: Profile(
        "Write a Mermaid diagram (a .mmd file under docs/) of the structure the task names.",
        (*READ, "write_file", "finish"),
        max_rounds=4,
    ),
    TaskType.DEPLOYMENT: Profile("Write or update the deployment configuration the task asks for.", ALL),
    TaskType.PORTING: Profile("Port the code the task names to the target it names.", ALL),
}


def system_prompt(task_type: TaskType) -> str:
    return f"{COMMON}\n{PROFILES[task_type].instructions}"


def task_prompt(
    title: str, description: str, dependencies: Mapping[str, str], extra: Sequence[str] = ()
) -> str:
    """The first user message: the task, and what its dependencies reported."""
    parts = [f"Task: {title}"]
    if description.strip():
        parts.append(description.strip())
    if dependencies:
        done = "\n".join(f"- {key}: {summary[:300]}" for key, summary in dependencies.items())
        parts.append(f"Already done by earlier tasks:\n{done}")
    parts.extend(extra)
    return "\n\n".join(parts)
