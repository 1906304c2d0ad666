"""Executors: how one attempt at a task is carried out, chosen by the task's run kind
(``registry.EXECUTORS``)."""

from helixcode.agent.executors.base import (
    AlreadyReported,
    Executor,
    TaskContext,
    executor_for,
    load_executors,
)
from helixcode.agent.executors.python import PythonContext

__all__ = ["AlreadyReported", "Executor", "PythonContext", "TaskContext", "executor_for", "load_executors"]
