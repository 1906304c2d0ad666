"""The task state machine as one table, shared by the engine and its tests.

Terminal statuses may still move when a person asks (``helix resume --retry/--skip``); the engine never
moves them on its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from helixcode.domain.enums import TaskStatus as S
from helixcode.errors import InvalidTransition

__all__ = ["TRANSITIONS", "can_transition", "check_transition"]

TRANSITIONS: Mapping[S, frozenset[S]] = {
    S.BLOCKED: frozenset({S.READY, S.WAITING, S.UPSTREAM_FAILED, S.PAUSED, S.CANCELLED, S.SKIPPED}),
    S.READY: frozenset({S.RUNNING, S.WAITING, S.PAUSED, S.CANCELLED, S.SKIPPED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.RETRYING, S.FAILED, S.READY, S.WAITING, S.PAUSED, S.CANCELLED}),
    S.RETRYING: frozenset({S.READY, S.PAUSED, S.CANCELLED, S.SKIPPED}),
    S.WAITING: frozenset({S.SUCCEEDED, S.FAILED, S.PAUSED, S.CANCELLED}),
    S.PAUSED: frozenset({S.READY, S.BLOCKED, S.WAITING, S.CANCELLED, S.SKIPPED}),
    # failed -> waiting: a split parent (or planner) that failed through a part is waiting again when
    # that part is retried or skipped (``resume --retry/--skip``).
    S.FAILED: frozenset({S.READY, S.WAITING, S.SKIPPED}),
    S.UPSTREAM_FAILED: frozenset({S.BLOCKED, S.SKIPPED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.CANCELLED: frozenset(),
    S.SKIPPED: frozenset(),
}


def can_transition(current: S, new: S) -> bool:
    return new in TRANSITIONS[current]


def check_transition(current: S, new: S, task: str = "") -> None:
    """Raise ``InvalidTransition`` unless ``current -> new`` is in the table."""
    if not can_transition(current, new):
        where = f"task {task}: " if task else ""
        raise InvalidTransition(f"{where}cannot go from {current} to {new}")
