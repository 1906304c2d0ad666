"""ETA from measured durations and progress; no measurement, no estimate."""

from __future__ import annotations

import pytest

from helixcode.domain.progress import LeafProgress, estimate_eta


def done(kind: str, duration: float) -> LeafProgress:
    return LeafProgress(type=kind, progress=1.0, done=True, duration=duration, running_for=None)


def waiting(kind: str) -> LeafProgress:
    return LeafProgress(type=kind, progress=0.0, done=False, duration=None, running_for=None)


def running(kind: str, progress: float, running_for: float) -> LeafProgress:
    return LeafProgress(type=kind, progress=progress, done=False, duration=None, running_for=running_for)


def test_no_estimate_until_a_task_has_finished() -> None:
    assert estimate_eta([], 1) is None
    assert estimate_eta([waiting("building"), running("testing", 0.5, 3.0)], 2) is None
    # Finished without a measured duration (failed, skipped) is no measurement either.
    failed = LeafProgress(type="building", progress=0.0, done=True, duration=None, running_for=None)
    assert estimate_eta([failed, waiting("building")], 1) is None


def test_nothing_left_means_zero() -> None:
    assert estimate_eta([done("building", 4.0), done("testing", 2.0)], 1) == 0.0


def test_waiting_tasks_cost_the_mean_duration_of_their_type() -> None:
    leaves = [done("building", 2.0), done("building", 4.0), done("testing", 10.0)]
    assert estimate_eta([*leaves, waiting("building")], 1) == pytest.approx(3.0)
    assert estimate_eta([*leaves, waiting("testing")], 1) == pytest.approx(10.0)
    assert estimate_eta([*leaves, waiting("building"), waiting("testing")], 1) == pytest.approx(13.0)


def test_a_type_never_seen_costs_the_overall_mean() -> None:
    leaves = [done("building", 2.0), done("testing", 4.0), waiting("deployment")]
    assert estimate_eta(leaves, 1) == pytest.approx(3.0)


def test_a_running_task_with_credible_progress_uses_its_own_rate() -> None:
    # 40% done in 8 s: 12 s left, whatever the type's mean says.
    leaves = [done("building", 100.0), running("building", 0.4, 8.0)]
    assert estimate_eta(leaves, 1) == pytest.approx(12.0)


def test_a_running_task_that_has_said_too_little_uses_the_mean_scaled_by_what_is_left() -> None:
    leaves = [done("building", 10.0), running("building", 0.02, 50.0)]
    assert estimate_eta(leaves, 1) == pytest.approx(10.0 * 0.98)


def test_work_is_divided_by_parallelism_at_least_one() -> None:
    leaves = [done("building", 6.0), *[waiting("building") for _ in range(4)]]
    assert estimate_eta(leaves, 1) == pytest.approx(24.0)
    assert estimate_eta(leaves, 4) == pytest.approx(6.0)
    assert estimate_eta(leaves, 0) == pytest.approx(24.0)


def test_at_the_same_running_time_more_progress_means_less_left() -> None:
    base = [done("building", 10.0)]
    estimates = [estimate_eta([*base, running("building", p, 5.0)], 1) for p in (0.1, 0.3, 0.6, 0.9, 1.0)]
    assert all(e is not None for e in estimates)
    assert estimates == sorted(estimates, reverse=True)
