"""Executors: how one attempt at a task is carried out, chosen by the task's ``run`` spec."""

from helixcode.agent.executors.base import AlreadyReported, Executor, TaskContext, executor_for

__all__ = ["AlreadyReported", "Executor", "TaskContext", "executor_for"]
