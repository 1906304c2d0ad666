"""Capability names that tasks require by default, by how they run (the kinds' registry,
``domain.kinds``, says which kind requires which).

An agent task needs a model (``llm``), a git workspace (``git``) and a working sandbox for the
commands its model chooses (``sandbox``); a test run (``tests``) needs a git workspace and the sandbox
(it runs tests a model may have written; the debugging tasks it adds are agent tasks); shell, built-in
and Python tasks, written by the plan's author, need nothing beyond a worker. A plan's explicit
``requires`` replaces these defaults.
"""

from __future__ import annotations

__all__ = ["AGENT_REQUIRES", "TESTS_REQUIRES"]

AGENT_REQUIRES = ("git", "llm", "sandbox")
TESTS_REQUIRES = ("git", "sandbox")
