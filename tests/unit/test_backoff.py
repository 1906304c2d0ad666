"""Retry backoff: ``min(cap, base * 2^(n-1))`` as a ceiling, and a delay drawn uniformly below it."""

from __future__ import annotations

import random
import statistics

import pytest

from helixcode.domain.backoff import backoff_ceiling, retry_delay


@pytest.mark.parametrize(("base", "cap"), [(1.0, 300.0), (0.05, 0.5), (2.5, 7.0), (10.0, 10.0), (0.001, 1e9)])
def test_ceiling_doubles_from_base_until_the_cap(base: float, cap: float) -> None:
    for failures in range(1, 40):
        assert backoff_ceiling(failures, base, cap) == pytest.approx(min(cap, base * 2 ** (failures - 1)))


def test_ceiling_is_non_decreasing_and_never_above_the_cap() -> None:
    ceilings = [backoff_ceiling(n, 0.3, 20.0) for n in range(1, 30)]
    assert ceilings == sorted(ceilings)
    assert max(ceilings) == 20.0
    assert ceilings[0] == 0.3


def test_huge_failure_counts_do_not_overflow() -> None:
    assert backoff_ceiling(10_000, 1.0, 300.0) == 300.0
    assert backoff_ceiling(2**40, 1e-9, 5.0) == 5.0


@pytest.mark.parametrize("failures", [0, -1])
def test_failures_count_from_one(failures: int) -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_ceiling(failures, 1.0, 10.0)
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(failures, 1.0, 10.0)


def test_delay_stays_within_zero_and_the_ceiling() -> None:
    rng = random.Random(7)
    for failures in range(1, 12):
        ceiling = backoff_ceiling(failures, 0.5, 30.0)
        for _ in range(200):
            assert 0.0 <= retry_delay(failures, 0.5, 30.0, rng) <= ceiling


def test_delay_is_full_jitter_spread_over_the_whole_window() -> None:
    # Full jitter: uniform on [0, ceiling], so mean ~ ceiling/2 and both ends of the window are used.
    rng = random.Random(1234)
    ceiling = backoff_ceiling(4, 1.0, 300.0)
    draws = [retry_delay(4, 1.0, 300.0, rng) for _ in range(5_000)]
    assert statistics.fmean(draws) == pytest.approx(ceiling / 2, rel=0.05)
    assert min(draws) < ceiling * 0.02
    assert max(draws) > ceiling * 0.98


def test_a_seeded_generator_makes_delays_reproducible() -> None:
    first = [retry_delay(n, 1.0, 60.0, random.Random(99)) for n in range(1, 8)]
    second = [retry_delay(n, 1.0, 60.0, random.Random(99)) for n in range(1, 8)]
    assert first == second
