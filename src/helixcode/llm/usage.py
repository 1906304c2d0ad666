"""What each model call cost: tokens, latency and USD, and which task's attempt it was made for.

The manager does not know about tasks; the worker says which attempt is running (``attempt_scope``,
a context variable, so every call made inside the attempt's asyncio task carries it), and the manager
hands each finished call to a ``CallSink`` (the store, in a worker) with that context.

Cost in USD comes from a maintained pricing table (the ``genai-prices`` package, offline: its snapshot
ships in the wheel), with per-provider overrides in config (``[providers.NAME] price_input`` /
``price_output``, USD per million tokens) for private deployments, and 0 for the embedded model. A
model the table does not know costs ``None`` (unknown), never a guess.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "AttemptTally",
    "CallContext",
    "CallSink",
    "Price",
    "attempt_scope",
    "call_cost",
    "current_call_context",
]


@dataclass(slots=True)
class AttemptTally:
    """What one attempt's calls used so far, kept in memory so that the worker can report it with the
    attempt's outcome without reading the call records back."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float | None = None  # None until a call with a known price
    unpriced: int = 0

    def add(self, tokens: int, cost_usd: float | None) -> None:
        self.calls += 1
        self.tokens += tokens
        if cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd


@dataclass(frozen=True, slots=True)
class CallContext:
    """The attempt a call is made for (``tally`` sums its calls, when the caller wants that)."""

    job_id: str | None = None
    task_id: int | None = None
    attempt: int | None = None
    worker_id: str | None = None
    tally: AttemptTally | None = None


_NONE = CallContext()
_context: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("helix_llm_call", default=None)


def current_call_context() -> CallContext:
    return _context.get() or _NONE


@contextlib.contextmanager
def attempt_scope(context: CallContext) -> Iterator[None]:
    """Every model call inside the block is recorded as made for ``context``'s attempt."""
    token = _context.set(context)
    try:
        yield
    finally:
        _context.reset(token)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, from config (overrides the table)."""

    input: float
    output: float
    cached_input: float | None = None


#: Provider kinds whose calls the pricing table knows, by the table's provider id.
TABLE_PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}


def call_cost(
    kind: str, model: str, prompt: int, completion: int, cached: int = 0, price: Price | None = None
) -> float | None:
    """The call's cost in USD, or None when nobody knows it."""
    if price is not None:
        cached_rate = price.input if price.cached_input is None else price.cached_input
        return ((prompt - cached) * price.input + cached * cached_rate + completion * price.output) / 1e6
    if kind == "local":
        return 0.0  # the embedded model runs in the worker's own process
    provider = TABLE_PROVIDERS.get(kind)
    if provider is None:
        return None
    return _table_cost(provider, model, prompt, completion, cached)


@functools.lru_cache(maxsize=4096)
def _table_cost(provider: str, model: str, prompt: int, completion: int, cached: int) -> float | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - a dependency, but costs are optional
        return None
    try:
        found = calc_price(
            Usage(input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached or None),
            model,
            provider_id=provider,
        )
    except LookupError:
        return None
    return float(found.total_price)


class CallSink(Protocol):
    """Where finished calls go (the store in a worker), and who knows the jobs' budgets."""

    async def budget_spent(self, context: CallContext) -> str | None:
        """Why no new call may start for ``context``'s job (its budget is spent), or None."""
        ...

    async def record_call(
        self,
        context: CallContext,
        *,
        provider: str,
        model: str,
        ok: bool,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        latency_s: float,
        first_token_s: float | None,
        error: str | None,
        cost_usd: float | None,
    ) -> None: ...
