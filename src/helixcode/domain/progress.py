"""Job progress and ETA from measured task progress and durations; no measurement, no estimate."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LeafProgress", "estimate_eta"]


@dataclass(frozen=True, slots=True)
class LeafProgress:
    """One leaf task as the estimator needs it."""

    type: str
    progress: float  # 0..1; 1 for finished tasks
    done: bool
    duration: float | None  # measured seconds of the successful attempt, for finished tasks
    running_for: float | None  # seconds the current attempt has run, for running tasks


def _task_remaining(leaf: LeafProgress, mean: float) -> float:
    if leaf.running_for is not None and leaf.progress > 0.05:
        # The task's own rate, once it has said enough to be credible.
        return leaf.running_for / leaf.progress * (1.0 - leaf.progress)
    return mean * (1.0 - leaf.progress)


def estimate_eta(leaves: Iterable[LeafProgress], parallelism: int) -> float | None:
    """Seconds until the remaining leaves finish, or ``None`` until some task of each type has finished.

    Remaining work per task is its own measured rate when it is running and has reported progress,
    otherwise the mean duration of finished tasks of its type (or of all types when its type has none).
    """
    leaves = list(leaves)
    finished = [leaf for leaf in leaves if leaf.done and leaf.duration is not None]
    if not finished:
        return None
    overall = statistics.fmean(leaf.duration for leaf in finished if leaf.duration is not None)
    by_type: dict[str, list[float]] = {}
    for leaf in finished:
        by_type.setdefault(leaf.type, []).append(leaf.duration or 0.0)
    means = {t: statistics.fmean(d) for t, d in by_type.items()}
    remaining = sum(_task_remaining(leaf, means.get(leaf.type, overall)) for leaf in leaves if not leaf.done)
    return remaining / max(1, parallelism)
