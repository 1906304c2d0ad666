"""Claim order as a pure function: priority first, then criticality; aging lifts waiting tasks."""

from __future__ import annotations

import itertools

import pytest

from helixcode.domain.enums import Criticality, Priority
from helixcode.domain.ordering import CRIT_LEVELS, aged_claim_rank, claim_rank, priority_level

PAIRS = list(itertools.product(Priority, Criticality))


def _rank(p: Priority, c: Criticality) -> int:
    return claim_rank(p.rank, c.rank)


def test_every_priority_criticality_pair_has_its_own_rank() -> None:
    ranks = [_rank(p, c) for p, c in PAIRS]
    assert len(set(ranks)) == len(PAIRS)
    assert min(ranks) == 0
    assert _rank(Priority.HIGH, Criticality.CRITICAL) == 0


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(PAIRS, 2)))
def test_priority_decides_first_then_criticality(
    a: tuple[Priority, Criticality], b: tuple[Priority, Criticality]
) -> None:
    (pa, ca), (pb, cb) = a, b
    expected_first = pa.rank > pb.rank or (pa.rank == pb.rank and ca.rank > cb.rank)
    assert (_rank(pa, ca) < _rank(pb, cb)) is expected_first


def test_priority_level_recovers_the_priority_part() -> None:
    for p, c in PAIRS:
        assert priority_level(_rank(p, c)) == Priority.HIGH.rank - p.rank


@pytest.mark.parametrize(("p", "c"), PAIRS)
def test_aging_lifts_one_priority_step_per_period_up_to_high(p: Priority, c: Criticality) -> None:
    base = _rank(p, c)
    period = 300.0
    assert aged_claim_rank(p.rank, c.rank, 0.0, period) == base
    assert aged_claim_rank(p.rank, c.rank, period * 0.99, period) == base
    for steps in range(0, 5):
        aged = aged_claim_rank(p.rank, c.rank, period * steps + 1e-6, period)
        lifted = min(steps, priority_level(base))
        assert aged == base - lifted * CRIT_LEVELS
        # Aging changes the priority part only: the criticality tie-break is kept.
        assert aged % CRIT_LEVELS == base % CRIT_LEVELS
        assert aged >= base % CRIT_LEVELS


def test_a_long_waiting_low_task_overtakes_a_fresh_high_one_of_the_same_criticality() -> None:
    period = 10.0
    old_low = aged_claim_rank(Priority.LOW.rank, Criticality.NORMAL.rank, 2 * period, period)
    fresh_high = aged_claim_rank(Priority.HIGH.rank, Criticality.NORMAL.rank, 0.0, period)
    # Equal ranks: the store then orders by time ready, and the old task was ready first.
    assert old_low == fresh_high
    half_aged = aged_claim_rank(Priority.LOW.rank, Criticality.NORMAL.rank, period, period)
    assert half_aged == _rank(Priority.NORMAL, Criticality.NORMAL)
