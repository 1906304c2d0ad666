"""Claim order: priority first, then criticality, then critical path first, then time ready; aging
lifts waiting tasks.

Both ranks fold into one small integer, ``claim_rank`` (lower is claimed first). Ties go to the task
with the longest chain of tasks waiting on it (``chain_rank``, see ``graph.chain_lengths``), then to the
one ready first, so that the store's claim is a single ascending index scan over
``(status, claim_rank, chain_rank, ready_at, id)``. Aging lowers the priority part one step per
``aging_seconds`` waited, up to high: low priority never starves.
"""

from __future__ import annotations

from helixcode.domain.enums import Criticality, Priority

__all__ = ["CRIT_LEVELS", "aged_claim_rank", "claim_rank", "priority_level"]

CRIT_LEVELS = len(Criticality)
TOP_PRIORITY = Priority.HIGH.rank
TOP_CRITICALITY = Criticality.CRITICAL.rank


def claim_rank(priority_rank: int, criticality_rank: int) -> int:
    """0 for high/critical, growing as priority then criticality fall."""
    return (TOP_PRIORITY - priority_rank) * CRIT_LEVELS + (TOP_CRITICALITY - criticality_rank)


def priority_level(rank: int) -> int:
    """The priority part of a claim rank (0 = high)."""
    return rank // CRIT_LEVELS


def aged_claim_rank(priority_rank: int, criticality_rank: int, waited: float, aging_seconds: float) -> int:
    """The claim rank after waiting ``waited`` seconds: one priority step per ``aging_seconds``."""
    base = claim_rank(priority_rank, criticality_rank)
    steps = min(int(waited // aging_seconds), priority_level(base))
    return base - steps * CRIT_LEVELS
