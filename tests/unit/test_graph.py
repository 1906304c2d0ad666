from __future__ import annotations

import itertools

import pytest

from helixcode.domain.graph import chain_lengths, critical_path, dependents, topological_order, validate_graph
from helixcode.errors import CycleError, PlanError


def test_topological_order_puts_dependencies_first() -> None:
    graph = {"deploy": ["test"], "test": ["build"], "build": [], "docs": ["build"]}
    order = topological_order(graph)
    for key, deps in graph.items():
        for dep in deps:
            assert order.index(dep) < order.index(key)


def test_cycle_is_named_along_dependencies() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    with pytest.raises(CycleError) as info:
        validate_graph(graph)
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert "a -> b -> c -> a" in str(info.value)


def test_cycle_inside_a_larger_graph_names_only_the_cycle() -> None:
    graph = {"root": [], "x": ["root", "z"], "y": ["x"], "z": ["y"], "leaf": ["z"]}
    with pytest.raises(CycleError) as info:
        validate_graph(graph)
    assert set(info.value.cycle) == {"x", "y", "z"}
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    for key, dep in itertools.pairwise(cycle):
        assert dep in graph[key]


def test_unknown_and_self_dependencies_are_all_reported() -> None:
    with pytest.raises(PlanError) as info:
        validate_graph({"a": ["a"], "b": ["nope"], "c": ["b", "b"]})
    faults = info.value.faults
    assert "task 'a': depends on itself" in faults
    assert "task 'b': depends on unknown task 'nope'" in faults
    assert "task 'c': lists dependency 'b' twice" in faults


def test_critical_path_is_the_heaviest_chain() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    weights = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0}
    total, path = critical_path(graph, weights.__getitem__)
    assert total == 7.0
    assert path == ["a", "b", "d"]


def test_critical_path_of_empty_graph() -> None:
    assert critical_path({}, lambda _k: 1.0) == (0.0, [])


def test_dependents_reverses_edges() -> None:
    assert dependents({"a": [], "b": ["a"], "c": ["a", "b"]}) == {"a": ["b", "c"], "b": ["c"], "c": []}


def test_large_chain_validates() -> None:
    graph = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(20_000)}
    validate_graph(graph)
    assert topological_order(graph)[:3] == ["t0", "t1", "t2"]


def test_chain_lengths_count_the_longest_chain_of_dependents() -> None:
    graph = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": [], "f": ["d", "c"]}
    assert chain_lengths(graph) == {"a": 4, "b": 3, "c": 2, "d": 2, "e": 1, "f": 1}
    assert chain_lengths({}) == {}


def test_chain_lengths_agree_with_the_definition_on_random_graphs() -> None:
    import random

    rng = random.Random(7)
    for n in (1, 5, 40, 300):
        graph = {
            f"t{i}": [f"t{d}" for d in rng.sample(range(i), min(i, rng.randint(0, 3)))] for i in range(n)
        }
        keys = list(graph)
        rng.shuffle(keys)  # the result must not depend on the listing order
        shuffled = {k: graph[k] for k in keys}
        below = dependents(shuffled)
        expected: dict[str, int] = {}
        for key in reversed(topological_order(shuffled)):
            expected[key] = 1 + max((expected[d] for d in below[key]), default=0)
        assert chain_lengths(shuffled) == expected
