"""Pure decisions of the manager: which models can serve a request, in what order, and what to do after
an error (retry here after a backoff, move to the next candidate, or give up). No I/O, so every rule is
unit-tested with plain data.

Capabilities are hard filters (a model without tool support never gets a request with tools); the order
among the models left is priority, cost and measured latency, or the largest window first when the
caller asks for it (a planner reads a whole file listing and writes the plan in one reply).

    order = select(candidates, Requirements(tools=True), available=lambda c: True)
    decide(ConnectionRefused("down"), attempt=0, policy=RetryPolicy())   # Decision("next", 0.0)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from helixcode.llm.errors import (
    AuthError,
    ConnectionRefused,
    ContextLengthExceeded,
    LLMError,
    MissingExtra,
    ModelNotFound,
    RateLimited,
    RetryableError,
)
from helixcode.llm.types import ChatRequest, ModelCapabilities

__all__ = [
    "Candidate",
    "Decision",
    "Requirements",
    "RetryPolicy",
    "backoff",
    "counts_against_breaker",
    "decide",
    "fits",
    "larger_windows",
    "meets",
    "model_matches",
    "rank",
    "select",
]


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a call needs from a model.

    ``tools``, ``json_schema``, ``vision``, ``min_context`` and ``models`` filter: a candidate lacking
    one is never asked. ``models`` pins the call to any of those names (matched as by
    :func:`model_matches`); empty means any model. ``largest_context`` only orders: the largest window
    first, then the usual priority, cost and latency.
    """

    tools: bool = False
    json_schema: bool = False
    vision: bool = False
    min_context: int | None = None
    models: tuple[str, ...] = ()
    largest_context: bool = False

    @classmethod
    def for_request(cls, request: ChatRequest, extra: Requirements | None = None) -> Requirements:
        """What the request itself needs, joined with what the caller asks for; a model the request
        names replaces the caller's pins."""
        extra = extra or cls()
        return cls(
            tools=extra.tools or (bool(request.tools) and request.tool_choice != "none"),
            json_schema=extra.json_schema or request.response_schema is not None,
            vision=extra.vision,
            min_context=extra.min_context,
            models=(request.model,) if request.model else extra.models,
            largest_context=extra.largest_context,
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: str
    model: str
    capabilities: ModelCapabilities
    priority: int = 100
    cost: float = 0.0
    latency_s: float | None = None


def meets(caps: ModelCapabilities, req: Requirements) -> bool:
    if (req.tools and not caps.tools) or (req.json_schema and not caps.json_schema):
        return False
    if req.vision and not caps.vision:
        return False
    return req.min_context is None or (caps.context_length or 0) >= req.min_context


def fits(c: Candidate, req: Requirements) -> bool:
    """``c`` has every capability ``req`` asks for and is one of its pinned models (if any)."""
    pinned = not req.models or any(model_matches(c.model, m) for m in req.models)
    return pinned and meets(c.capabilities, req)


def rank(c: Candidate, req: Requirements) -> tuple[int, int, float, float]:
    """Sort key, best first: the larger window when ``req`` prefers it (unknown counts as none), then
    priority (lower first), cost, measured latency (unmeasured last)."""
    window = -(c.capabilities.context_length or 0) if req.largest_context else 0
    return (window, c.priority, c.cost, float("inf") if c.latency_s is None else c.latency_s)


def select(
    candidates: Iterable[Candidate], req: Requirements, *, available: Callable[[Candidate], bool]
) -> list[Candidate]:
    """The candidates that fit ``req`` and are available, best first (see :func:`rank`)."""
    return sorted((c for c in candidates if fits(c, req) and available(c)), key=lambda c: rank(c, req))


def larger_windows(candidates: Iterable[Candidate], exc: ContextLengthExceeded) -> list[Candidate]:
    """Candidates whose window is larger than the one that overflowed (and than the prompt, when known)."""
    need = max(exc.n_ctx, exc.n_prompt)
    return [c for c in candidates if (c.capabilities.context_length or 0) > need]


def model_matches(served: str, wanted: str) -> bool:
    """A requested model name matches a served id exactly or as the file name/stem of a GGUF path."""
    path = PurePath(served)
    return wanted in (served, path.name, path.stem) or served.removesuffix(":latest") == wanted


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry on the same candidate only while the wait is short; otherwise move on."""

    attempts_per_candidate: int = 2
    base: float = 0.25
    cap: float = 4.0
    max_wait: float = 2.0


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["retry", "next", "raise"]
    delay: float = 0.0


def backoff(
    attempt: int, policy: RetryPolicy, retry_after: float | None = None, rand: float | None = None
) -> float:
    """Full-jitter exponential backoff; a server's ``Retry-After`` is a floor."""
    jitter: float = random.random() if rand is None else rand
    delay: float = min(policy.cap, policy.base * 2.0**attempt) * jitter
    return max(delay, retry_after or 0.0)


def decide(exc: LLMError, attempt: int, policy: RetryPolicy, rand: float | None = None) -> Decision:
    """What to do after ``exc`` on attempt ``attempt`` (0-based) of one candidate."""
    if isinstance(exc, ContextLengthExceeded):
        return Decision("next")
    if isinstance(exc, AuthError | ModelNotFound | MissingExtra):
        return Decision("next")  # another provider has other keys and other models
    if not isinstance(exc, RetryableError):
        return Decision("raise")  # bad request, refusal: the request itself is at fault
    if isinstance(exc, ConnectionRefused):
        return Decision("next")  # nobody listens: waiting will not help, the next candidate might
    delay = backoff(attempt, policy, exc.retry_after, rand)
    if attempt + 1 < policy.attempts_per_candidate and delay <= policy.max_wait:
        return Decision("retry", delay)
    return Decision("next")


def counts_against_breaker(exc: LLMError) -> bool:
    """Only failures of the provider itself open its breaker; a 429 cools one model down instead."""
    return isinstance(exc, RetryableError) and not isinstance(exc, RateLimited)
