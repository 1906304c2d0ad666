"""Retry delays: exponential backoff with full jitter (AWS architecture blog's "Full Jitter").

Full jitter spreads retries of many failing tasks over the whole window, so a shared cause (a provider
outage, a locked database) does not get a synchronised thundering herd when it recovers.
"""

from __future__ import annotations

import random

__all__ = ["backoff_ceiling", "retry_delay"]


def backoff_ceiling(failures: int, base: float, cap: float) -> float:
    """The upper bound of the delay after the ``failures``-th failure: ``min(cap, base * 2^(n-1))``."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    # Avoid float overflow for large counts: past 2^60 the cap has long won.
    return min(cap, base * 2.0 ** min(failures - 1, 60))


def retry_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from ``[0, backoff_ceiling(...)]``."""
    return (rng or random).uniform(0.0, backoff_ceiling(failures, base, cap))
