"""Executors: how one attempt at a task is carried out, chosen by the task's ``run`` spec."""

from helixcode.agent.executors.base import Executor, TaskContext, executor_for

__all__ = ["Executor", "TaskContext", "executor_for"]
