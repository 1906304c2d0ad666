"""Balanced splitting of uniform work (files and their sizes, say) into parts for parallel workers.

Longest-processing-time first: sort items by weight, heaviest first, and give each to the currently
lightest part. It is deterministic (ties break on the item name) and within 4/3 of the optimum.

A part does only its items: its run carries them where its executor reads them (``RunModel.for_items``)
and its description lists them (``part_description``), so parts of an agent task do not redo each
other's work and their merges do not conflict.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from helixcode.errors import PlanError

__all__ = ["Part", "choose_parts", "part_description", "split_balanced"]


@dataclass(frozen=True, slots=True)
class Part:
    items: tuple[str, ...]
    weight: float


def part_description(description: str, items: Sequence[str]) -> str:
    """A part's description: the whole task's, then the items this part (and only it) works on."""
    listing = "\n".join(f"- {item}" for item in items)
    return f"{description}\n\nOnly these items:\n{listing}".strip()


def choose_parts(total_weight: float, n_items: int, slots: int, min_chunk: float) -> int:
    """How many parts: no more than the available slots, the items, or chunks of ``min_chunk``."""
    if n_items < 1:
        raise PlanError(["split: no work items"])
    by_chunk = math.floor(total_weight / min_chunk) if min_chunk > 0 else n_items
    return max(1, min(slots, n_items, by_chunk))


def split_balanced(items: Mapping[str, float] | Sequence[tuple[str, float]], parts: int) -> list[Part]:
    """Split weighted items into ``parts`` parts whose weights are as even as LPT makes them."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    faults = [f"split: item '{name}' has weight {w}; weights must be >= 0" for name, w in pairs if w < 0]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        faults.append("split: item names must be unique")
    if parts < 1:
        faults.append(f"split: parts must be >= 1, got {parts}")
    if not pairs:
        faults.append("split: no work items")
    if faults:
        raise PlanError(faults)
    parts = min(parts, len(pairs))
    # Ties on load go to the part with fewer items, so zero-weight items never leave a part empty.
    heap: list[tuple[float, int, int]] = [(0.0, 0, i) for i in range(parts)]
    buckets: list[list[str]] = [[] for _ in range(parts)]
    weights = [0.0] * parts
    for name, weight in sorted(pairs, key=lambda p: (-p[1], p[0])):
        load, count, index = heapq.heappop(heap)
        buckets[index].append(name)
        weights[index] = load + weight
        heapq.heappush(heap, (weights[index], count + 1, index))
    return [Part(tuple(b), w) for b, w in zip(buckets, weights, strict=True)]
