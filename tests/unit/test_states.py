from __future__ import annotations

import pytest

from helixcode.domain.enums import TERMINAL_STATUSES, Criticality, Priority, TaskStatus
from helixcode.domain.states import TRANSITIONS, can_transition, check_transition
from helixcode.errors import InvalidTransition


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)


def test_succeeded_cancelled_and_skipped_are_final() -> None:
    for status in (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED, TaskStatus.SKIPPED):
        assert TRANSITIONS[status] == frozenset()
        assert status.terminal


def test_non_terminal_statuses_can_be_cancelled() -> None:
    for status in TaskStatus:
        if not status.terminal:
            assert can_transition(status, TaskStatus.CANCELLED), status


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("blocked", "ready"),
        ("ready", "running"),
        ("running", "succeeded"),
        ("running", "retrying"),
        ("retrying", "ready"),
        ("running", "ready"),  # lease expiry
        ("running", "failed"),
        ("blocked", "upstream_failed"),
        ("failed", "ready"),  # a person retries
    ],
)
def test_documented_lifecycle_is_allowed(current: str, new: str) -> None:
    check_transition(TaskStatus(current), TaskStatus(new))


@pytest.mark.parametrize(
    ("current", "new"),
    [("blocked", "running"), ("succeeded", "ready"), ("ready", "succeeded"), ("retrying", "running")],
)
def test_shortcuts_are_refused(current: str, new: str) -> None:
    with pytest.raises(InvalidTransition, match=f"cannot go from {current} to {new}"):
        check_transition(TaskStatus(current), TaskStatus(new), task="t1")


def test_only_succeeded_and_skipped_satisfy_dependents() -> None:
    assert {s for s in TaskStatus if s.satisfies_dependents} == {TaskStatus.SUCCEEDED, TaskStatus.SKIPPED}
    assert TaskStatus.FAILED in TERMINAL_STATUSES


def test_ranks_order_urgency() -> None:
    assert Priority.HIGH.rank > Priority.NORMAL.rank > Priority.LOW.rank
    assert Criticality.CRITICAL.rank > Criticality.HIGH.rank > Criticality.NORMAL.rank > Criticality.LOW.rank
    assert Priority.from_rank(Priority.HIGH.rank) is Priority.HIGH
