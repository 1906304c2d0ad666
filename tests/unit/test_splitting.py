"""Balanced splitting (longest processing time first) and the choice of how many parts."""

from __future__ import annotations

import itertools
import random

import pytest

from helixcode.domain.splitting import Part, choose_parts, split_balanced
from helixcode.errors import PlanError


def _optimal_makespan(weights: list[float], parts: int) -> float:
    """Brute force: the lightest possible heaviest part (small inputs only)."""
    best = float("inf")
    for assignment in itertools.product(range(parts), repeat=len(weights)):
        loads = [0.0] * parts
        for w, p in zip(weights, assignment, strict=True):
            loads[p] += w
        best = min(best, max(loads))
    return best


def _check_partition(items: dict[str, float], result: list[Part]) -> None:
    names = [n for part in result for n in part.items]
    assert sorted(names) == sorted(items), "every item exactly once"
    for part in result:
        assert part.weight == pytest.approx(sum(items[n] for n in part.items))


@pytest.mark.parametrize("seed", range(25))
def test_parts_are_within_four_thirds_of_the_optimum(seed: int) -> None:
    rng = random.Random(seed)
    items = {f"f{i}": float(rng.randint(1, 40)) for i in range(rng.randint(2, 8))}
    parts = rng.randint(2, 3)
    result = split_balanced(items, parts)
    _check_partition(items, result)
    assert len(result) == min(parts, len(items))
    heaviest = max(p.weight for p in result)
    assert heaviest <= 4 / 3 * _optimal_makespan(list(items.values()), len(result)) + 1e-9


def test_heaviest_items_go_first_each_to_the_lightest_part() -> None:
    # By hand: 7 -> A, 6 -> B, 5 -> B (6 < 7), 4 -> A (7 < 11), 3 -> A (tie at 11: the first part).
    result = split_balanced({"a": 7, "b": 6, "c": 5, "d": 4, "e": 3}, 2)
    assert [p.items for p in result] == [("a", "d", "e"), ("b", "c")]
    assert [p.weight for p in result] == [14.0, 11.0]


def test_equal_weights_spread_evenly() -> None:
    items = {f"file{i:02}": 1.0 for i in range(12)}
    result = split_balanced(items, 5)
    _check_partition(items, result)
    assert sorted(len(p.items) for p in result) == [2, 2, 2, 3, 3]


def test_deterministic_whatever_the_input_order() -> None:
    pairs = [("x", 3.0), ("y", 3.0), ("z", 3.0), ("w", 1.0), ("v", 2.0)]
    expected = split_balanced(pairs, 2)
    for perm in itertools.permutations(pairs):
        assert split_balanced(list(perm), 2) == expected
        assert split_balanced(dict(perm), 2) == expected


def test_more_parts_than_items_gives_one_part_per_item() -> None:
    result = split_balanced({"a": 1.0, "b": 2.0}, 10)
    assert len(result) == 2
    assert sorted(p.items for p in result) == [("a",), ("b",)]


def test_zero_weights_are_allowed_and_no_part_is_left_empty() -> None:
    result = split_balanced({"a": 0.0, "b": 0.0, "c": 0.0}, 3)
    assert sorted(p.items for p in result) == [("a",), ("b",), ("c",)]
    mixed = split_balanced({"big": 10.0, "x": 0.0, "y": 0.0, "z": 0.0}, 3)
    assert all(p.items for p in mixed)
    _check_partition({"big": 10.0, "x": 0.0, "y": 0.0, "z": 0.0}, mixed)


@pytest.mark.parametrize(
    ("items", "parts", "fault"),
    [
        ({"a": -1.0}, 1, "weights must be >= 0"),
        ([("a", 1.0), ("a", 2.0)], 1, "must be unique"),
        ({"a": 1.0}, 0, "parts must be >= 1"),
        ({}, 2, "no work items"),
    ],
)
def test_invalid_input_is_refused_with_every_fault(
    items: dict[str, float] | list[tuple[str, float]], parts: int, fault: str
) -> None:
    with pytest.raises(PlanError, match=fault):
        split_balanced(items, parts)


def test_all_faults_are_reported_together() -> None:
    with pytest.raises(PlanError) as info:
        split_balanced([("a", -1.0), ("a", 2.0)], 0)
    assert len(info.value.faults) == 3


@pytest.mark.parametrize(
    ("total", "n_items", "slots", "min_chunk", "expected"),
    [
        (100.0, 10, 4, 0.0, 4),  # slots bound
        (100.0, 3, 8, 0.0, 3),  # items bound
        (100.0, 10, 8, 30.0, 3),  # no part lighter than 30
        (10.0, 10, 8, 50.0, 1),  # always at least one part
        (0.0, 5, 4, 0.0, 4),
    ],
)
def test_choose_parts(total: float, n_items: int, slots: int, min_chunk: float, expected: int) -> None:
    assert choose_parts(total, n_items, slots, min_chunk) == expected


def test_choose_parts_needs_items() -> None:
    with pytest.raises(PlanError, match="no work items"):
        choose_parts(10.0, 0, 4, 0.0)
