"""Task graphs as files (YAML or JSON): the schema, parsing, and validation into a ``JobSpec``.

Every fault is collected and reported against the task it belongs to, so a person can fix a plan in one
pass; nothing reaches the database unless the whole plan is valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helixcode.domain.enums import Criticality, Priority, TaskType
from helixcode.domain.gc_pause import gc_paused
from helixcode.domain.graph import validate_graph
from helixcode.domain.kinds import RUN_KINDS, RunSpec, default_requires
from helixcode.domain.runs import (
    MAX_TEST_ROUNDS,
    AgentOptions,
    AgentRun,
    BuiltinRun,
    PythonRun,
    ShellRun,
    TestCycleOptions,
    TestCycleRun,
)
from helixcode.errors import PlanError

__all__ = [
    "MAX_TEST_ROUNDS",
    "AgentOptions",
    "AgentRun",
    "BuiltinRun",
    "JobSpec",
    "PythonRun",
    "RunSpec",
    "ShellRun",
    "TaskSpec",
    "TestCycleOptions",
    "TestCycleRun",
    "load_plan",
    "parse_plan",
]

TASK_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    id: Annotated[str, Field(pattern=TASK_KEY_PATTERN)]
    type: TaskType
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    priority: Priority = Priority.NORMAL
    criticality: Criticality = Criticality.NORMAL
    requires: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout: float | None = Field(default=None, gt=0, description="seconds per attempt")
    backoff_base: float | None = Field(default=None, gt=0, description="seconds; default from [tasks]")
    backoff_cap: float | None = Field(default=None, gt=0, description="seconds; default from [tasks]")
    run: RunSpec = Field(default_factory=AgentRun)

    @model_validator(mode="before")
    @classmethod
    def _default_requires(cls, data: Any) -> Any:
        if isinstance(data, dict) and "requires" not in data:
            return {**data, "requires": default_requires(data.get("type"), data.get("run"))}
        return data

    @field_validator("requires")
    @classmethod
    def _unique_requires(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class JobSpec(_Strict):
    name: str = Field(default="job", min_length=1, max_length=200)
    description: str = ""
    workdir: str | None = Field(default=None, description="where shell tasks run; default: the CWD")
    max_cost: float | None = Field(
        default=None, gt=0, description="USD the job's model calls may cost before it pauses"
    )
    max_tokens: int | None = Field(
        default=None, gt=0, description="tokens the job's model calls may use before it pauses"
    )
    tasks: list[TaskSpec] = Field(min_length=1)

    def graph(self) -> dict[str, list[str]]:
        return {t.id: list(t.depends_on) for t in self.tasks}


def _task_label(data: Any, index: int) -> str:
    try:
        key = data["tasks"][index]["id"]
    except (KeyError, IndexError, TypeError):
        key = None
    return f"task '{key}' (tasks[{index}])" if isinstance(key, str) else f"tasks[{index}]"


def _faults(exc: ValidationError, data: Any) -> list[str]:
    faults = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
            where = _task_label(data, loc[1])
            field = ".".join(str(p) for p in _untagged(loc[2:])) or "task"
        else:
            where = "plan"
            field = ".".join(str(p) for p in loc) or "document"
        if err["type"] == "extra_forbidden":
            faults.append(f"{where}: unknown field '{field}'")
        else:
            faults.append(f"{where}: {field}: {err['msg']}")
    return faults


_KIND_NAMES = frozenset(k.name for k in RUN_KINDS)


def _untagged(loc: list[Any]) -> list[Any]:
    """A field's path without the run kind's tag that pydantic puts after ``run`` (``run.agent.agent.x``
    is the plan's ``run.agent.x``)."""
    if len(loc) >= 3 and loc[0] == "run" and loc[1] in _KIND_NAMES:
        return [loc[0], *loc[2:]]
    return loc


def parse_plan(data: Any) -> JobSpec:
    """Validate plain data (from YAML or JSON) into a ``JobSpec`` or raise ``PlanError``."""
    if not isinstance(data, dict):
        raise PlanError(["plan: the document must be a mapping with a 'tasks' list"])
    with gc_paused():  # a large plan is hundreds of thousands of new objects (see gc_paused)
        try:
            spec = JobSpec.model_validate(data)
        except ValidationError as exc:
            raise PlanError(_faults(exc, data)) from None
        counts: dict[str, int] = {}
        for task in spec.tasks:
            counts[task.id] = counts.get(task.id, 0) + 1
        duplicates = [f"task '{key}': id used {n} times" for key, n in counts.items() if n > 1]
        if duplicates:
            raise PlanError(duplicates)
        validate_graph(spec.graph())
    return spec


def load_plan(path: Path) -> JobSpec:
    """Read a plan file; ``.json`` is JSON, anything else YAML (a superset of JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PlanError([f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"]) from exc
    return parse_plan(data)
