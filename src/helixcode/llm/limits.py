"""Limits a whole fleet shares: requests and tokens per minute, 429 cool-downs, providers known down.

Workers that share one provider account must behave like one polite client: wait for capacity rather
than send a request that will get a 429, slow down together when any of them gets one, and learn from
one worker's failures that a provider is down. The state lives in the system of record (the database),
so no new server is needed; the manager reaches it through this narrow interface, which the store
implements (``helixcode.store.limits``) and a process without a database leaves out (``None``: limits
are then per process, as before).

    admission = await shared.acquire("openai", "gpt-4o-mini", Quota(rpm=500, tpm=200_000), tokens=900)
    if admission.down: ...                     # another worker's breaker opened on this provider
    elif admission.wait: await sleep(admission.wait)
    else: ...call...; await shared.settle(admission.ticket, used_tokens)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Admission", "Quota", "SharedLimits", "estimate_tokens"]


@dataclass(frozen=True, slots=True)
class Quota:
    """A provider's (and model's) share of the account: at most ``rpm`` requests and ``tpm`` tokens
    per ``window`` seconds (a minute; tests shorten it). ``None``: not limited."""

    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm)


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on one request: go (``ticket`` names its slot), wait ``wait`` seconds and ask again,
    or stay away (``down``: the fleet marked the provider down until ``wait`` from now)."""

    wait: float = 0.0
    ticket: int | None = None
    down: bool = False
    why: str = ""

    @property
    def granted(self) -> bool:
        return not self.down and self.wait <= 0


class SharedLimits(Protocol):
    """Fleet-wide state behind the manager's calls (implemented by the store)."""

    async def acquire(self, provider: str, model: str, quota: Quota, *, tokens: int) -> Admission:
        """Take a slot for a request of about ``tokens`` tokens, or say how long to wait."""
        ...

    async def settle(self, ticket: int, tokens: int) -> None:
        """Correct a granted slot with the tokens the request really used."""
        ...

    async def block(self, provider: str, model: str, seconds: float) -> None:
        """A 429: nobody in the fleet sends to this model for ``seconds``."""
        ...

    async def mark_down(self, provider: str, seconds: float) -> None:
        """A breaker opened: nobody in the fleet sends to this provider for ``seconds``."""
        ...


def estimate_tokens(characters: int, max_tokens: int | None) -> int:
    """Tokens a request will use, before it is sent: about four characters a token for the prompt,
    plus the reply's limit. Corrected by ``settle`` once the provider reports its usage."""
    return characters // 4 + 1 + (max_tokens or 512)
