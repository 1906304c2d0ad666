"""HelixCode: split a large software task into a graph, schedule it durably, run it with LLM agents.

The public API is what ``__all__`` lists: the clients, the models of a task graph built in code, the
enums and records the clients return, and the errors a caller catches::

    from helixcode import BuiltinRun, Client, JobSpec, TaskSpec, TaskType

    plan = JobSpec(name="demo", tasks=[TaskSpec(id="a", type=TaskType.BUILDING, title="A",
                                                run=BuiltinRun(builtin="noop"))])
    with Client() as helix:
        print(helix.wait(helix.submit(plan).job.id).job.status)

Only the exception tree is imported here; every other name loads on first use (the module's
``__getattr__``), so ``import helixcode``, which every `helix` command does, stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from helixcode.errors import (
    AccessDenied,
    ConfigError,
    CycleError,
    DatabaseUnavailable,
    Forbidden,
    HelixError,
    NotFound,
    PlanError,
    RemoteError,
    SchedulerError,
    StoreError,
)

if TYPE_CHECKING:
    from helixcode.client import AsyncClient, Client
    from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus, TaskType
    from helixcode.domain.models import Event, Job, JobSummary, Task
    from helixcode.domain.plan import (
        AgentOptions,
        AgentRun,
        BuiltinRun,
        JobSpec,
        PythonRun,
        ShellRun,
        TaskSpec,
        TestCycleOptions,
        TestCycleRun,
    )
    from helixcode.domain.records import WorkerInfo

__all__ = [
    "AccessDenied",
    "AgentOptions",
    "AgentRun",
    "AsyncClient",
    "BuiltinRun",
    "Client",
    "ConfigError",
    "Criticality",
    "CycleError",
    "DatabaseUnavailable",
    "Event",
    "Forbidden",
    "HelixError",
    "Job",
    "JobSpec",
    "JobStatus",
    "JobSummary",
    "NotFound",
    "PlanError",
    "Priority",
    "PythonRun",
    "RemoteError",
    "SchedulerError",
    "ShellRun",
    "StoreError",
    "Task",
    "TaskSpec",
    "TaskStatus",
    "TaskType",
    "TestCycleOptions",
    "TestCycleRun",
    "WorkerInfo",
    "__version__",
]
__version__ = "0.1.0"

#: The lazily exported names, by the module each lives in.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "helixcode.client": ("AsyncClient", "Client"),
    "helixcode.domain.enums": ("Criticality", "JobStatus", "Priority", "TaskStatus", "TaskType"),
    "helixcode.domain.models": ("Event", "Job", "JobSummary", "Task"),
    "helixcode.domain.plan": (
        "AgentOptions",
        "AgentRun",
        "BuiltinRun",
        "JobSpec",
        "PythonRun",
        "ShellRun",
        "TaskSpec",
        "TestCycleOptions",
        "TestCycleRun",
    ),
    "helixcode.domain.records": ("WorkerInfo",),
}
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> object:
    """Import a public name's module on first use, then keep the name here (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'helixcode' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
