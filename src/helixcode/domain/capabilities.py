"""Capability names that tasks require by default, by how they run.

An agent task needs a model (``llm``), a git workspace (``git``) and a working sandbox for the
commands its model chooses (``sandbox``); a test run (``tests``) needs a git workspace and the sandbox
(it runs tests a model may have written; the debugging tasks it adds are agent tasks); shell and
built-in tasks, written by the plan's author, need nothing beyond a worker. A plan's explicit
``requires`` replaces these defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["AGENT_REQUIRES", "TESTS_REQUIRES", "default_requires", "run_kind"]

AGENT_REQUIRES = ("git", "llm", "sandbox")
TESTS_REQUIRES = ("git", "sandbox")


def run_kind(run: Mapping[str, Any] | None) -> str:
    """``shell``, ``builtin``, ``agent`` or ``tests`` (a missing run spec means the agent)."""
    if not run:
        return "agent"
    for kind in ("shell", "builtin", "agent", "tests"):
        if kind in run:
            return kind
    return "unknown"


def default_requires(task_type: str | None, run: Mapping[str, Any] | None) -> list[str]:
    del task_type  # every type's agent needs the same; kept so a type can differ later without API change
    return list({"agent": AGENT_REQUIRES, "tests": TESTS_REQUIRES}.get(run_kind(run), ()))
