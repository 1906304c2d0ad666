"""Which executor runs which kind of run: one dict keyed by the run's model (``domain.kinds`` lists
the kinds; a test checks that each has an executor here)."""

from __future__ import annotations

from collections.abc import Callable

from helixcode.agent.executors.agent import AgentExecutor
from helixcode.agent.executors.base import Executor
from helixcode.agent.executors.builtin import BuiltinExecutor
from helixcode.agent.executors.python import PythonExecutor
from helixcode.agent.executors.shell import ShellExecutor
from helixcode.agent.executors.testcycle import TestCycleExecutor
from helixcode.domain.runs import AgentRun, BuiltinRun, PythonRun, RunModel, ShellRun, TestCycleRun

__all__ = ["EXECUTORS"]

EXECUTORS: dict[type[RunModel], Callable[[], Executor]] = {
    AgentRun: AgentExecutor,
    ShellRun: ShellExecutor,
    BuiltinRun: BuiltinExecutor,
    TestCycleRun: TestCycleExecutor,
    PythonRun: PythonExecutor,
}
