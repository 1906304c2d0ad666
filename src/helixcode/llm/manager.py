"""The manager: one front for every configured provider, with selection, retries, fallback and records.

Calls go down a stack of small methods, ``chat`` -> ``_with_fallback`` -> ``_with_retries`` -> ``_call_once``;
the decisions in between are the pure functions of :mod:`helixcode.llm.policy`.

    async with LLMManager(entries) as llm:
        reply = await llm.chat(ChatRequest([Message.user("hi")]))
        async with llm.stream(request) as events:
            async for event in events: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from helixcode import tracing
from helixcode.llm.base import ChatStream, Provider
from helixcode.llm.errors import (
    BudgetReached,
    ContextLengthExceeded,
    LLMError,
    NoCandidate,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
)
from helixcode.llm.health import CircuitBreaker, Cooldowns, HealthMonitor
from helixcode.llm.limits import Quota, SharedLimits, estimate_tokens
from helixcode.llm.policy import (
    Candidate,
    Requirements,
    RetryPolicy,
    counts_against_breaker,
    decide,
    larger_windows,
    select,
)
from helixcode.llm.types import ChatRequest, ChatResponse, ModelCapabilities, ModelInfo, StreamEvent, Usage
from helixcode.llm.usage import CallSink, Price, call_cost, current_call_context

__all__ = ["CallRecord", "LLMManager", "ManagedStream", "ProviderEntry"]

log = logging.getLogger(__name__)

#: Weight of the newest latency sample in the moving average used for selection.
LATENCY_ALPHA = 0.3
#: A 429 without ``Retry-After`` cools the model down this long.
DEFAULT_COOLDOWN = 1.0


@dataclass
class ProviderEntry:
    provider: Provider
    priority: int = 100
    cost: float = 0.0
    #: The fleet's share of the provider's account (``[providers.NAME] rpm/tpm``), per model.
    quota: Quota = dataclasses.field(default_factory=Quota)
    #: USD per million tokens, when config sets it (else the pricing table's, see ``llm.usage``).
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One attempt on one candidate: what it cost and how it went."""

    provider: str
    model: str
    ok: bool
    latency_s: float
    first_event_s: float | None = None
    usage: Usage | None = None
    error: str | None = None
    streamed: bool = False


class LLMManager:
    def __init__(
        self,
        entries: Mapping[str, ProviderEntry],
        *,
        policy: RetryPolicy | None = None,
        breaker_threshold: int = 3,
        breaker_cooldown: float = 30.0,
        health_interval: float = 30.0,
        default_provider: str | None = None,
        default_model: str | None = None,
        max_rate_wait: float = 60.0,
        shared: SharedLimits | None = None,
        sink: CallSink | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.entries = dict(entries)
        self.providers = {name: e.provider for name, e in self.entries.items()}
        self.policy = policy or RetryPolicy()
        self.breakers = {
            name: CircuitBreaker(breaker_threshold, breaker_cooldown, clock=clock) for name in self.entries
        }
        self.cooldowns = Cooldowns(clock=clock)
        self.monitor = HealthMonitor(self.providers, interval=health_interval)
        self.default_provider = default_provider
        self.default_model = default_model
        #: Longest a call waits, in all, for 429 cool-downs when no other candidate can serve it.
        self.max_rate_wait = max_rate_wait
        #: The fleet's limits in the database (None: this process's breakers and cool-downs only).
        self.shared = shared
        #: Where every finished call is recorded with its tokens and cost (None: only ``records``).
        self.sink = sink
        self.records: deque[CallRecord] = deque(maxlen=1000)
        self.latency: dict[tuple[str, str], float] = {}
        self.discovery_errors: dict[str, str] = {}
        self._catalog: list[Candidate] | None = None
        self._sleep = sleep

    # -- lifecycle --

    async def start(self, *, monitor: bool = True) -> None:
        """Discover models and start the background health monitor."""
        await self.refresh_models()
        if monitor:
            self.monitor.start()

    async def aclose(self) -> None:
        await self.monitor.stop()
        await asyncio.gather(*(p.aclose() for p in self.providers.values()), return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- discovery and selection --

    async def refresh_models(self) -> dict[str, list[ModelInfo]]:
        """Ask every provider for its models; one that cannot answer falls back to its configured list."""
        names = list(self.providers)
        answers = await asyncio.gather(
            *(self.providers[n].list_models() for n in names), return_exceptions=True
        )
        found: dict[str, list[ModelInfo]] = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                self.discovery_errors[name] = str(answer)
                p = self.providers[name]
                caps = p.configured_capabilities or ModelCapabilities()
                answer = [ModelInfo(m, name, caps) for m in p.models]
            else:
                self.discovery_errors.pop(name, None)
            found[name] = answer
        self._catalog = [
            Candidate(m.provider, m.name, m.capabilities, self.entries[n].priority, self.entries[n].cost)
            for n, models in found.items()
            for m in models
        ]
        return found

    async def catalog(self) -> list[Candidate]:
        if self._catalog is None:
            await self.refresh_models()
        return [
            dataclasses.replace(c, latency_s=self.latency.get((c.provider, c.model)))
            for c in self._catalog or []
        ]

    def available(self, c: Candidate) -> bool:
        return (
            self.monitor.healthy(c.provider)
            and self.breakers[c.provider].allows()
            and not self.cooldowns.is_cool(c.provider, c.model)
        )

    async def candidates(
        self, request: ChatRequest, requirements: Requirements | None = None, provider: str | None = None
    ) -> list[Candidate]:
        """Who may serve ``request``, best first.

        The model is chosen, most explicit first, by the request's ``model``, the ``requirements``' pins,
        then ``llm.default_model`` (when the call goes to the default provider); ``provider`` narrows
        the pool to one provider.
        """
        req, pool = await self._pool(request, requirements, provider)
        return select(pool, req, available=self.available)

    async def _pool(
        self, request: ChatRequest, requirements: Requirements | None, provider: str | None
    ) -> tuple[Requirements, list[Candidate]]:
        provider = provider or self.default_provider
        if provider is not None and provider not in self.providers:
            raise NoCandidate(f"no provider named {provider!r} (configured: {', '.join(self.providers)})")
        req = Requirements.for_request(request, requirements)
        if not req.models and self.default_model and provider == self.default_provider:
            req = dataclasses.replace(req, models=(self.default_model,))
        return req, [c for c in await self.catalog() if provider is None or c.provider == provider]

    async def rate_wait(
        self, request: ChatRequest, requirements: Requirements | None = None, provider: str | None = None
    ) -> float | None:
        """Seconds until a model that could serve ``request`` ends its 429 cool-down, when only
        cool-downs stand in the way (None: nothing that fits would serve it after any wait)."""
        req, pool = await self._pool(request, requirements, provider)
        cooling = [
            self.cooldowns.remaining(c.provider, c.model)
            for c in select(pool, req, available=lambda c: self.monitor.healthy(c.provider))
            if self.breakers[c.provider].allows() and self.cooldowns.is_cool(c.provider, c.model)
        ]
        return min(cooling) if cooling else None

    # -- chat: _with_fallback -> _with_retries -> _call_once --

    async def chat(
        self, request: ChatRequest, *, requirements: Requirements | None = None, provider: str | None = None
    ) -> ChatResponse:
        """The reply from the best candidate, falling back on failure. When every candidate left is
        only cooling down after a 429, wait for the first one (up to ``max_rate_wait`` in all) rather
        than fail: the provider said when to come back."""
        waited = 0.0
        while True:
            queue = await self.candidates(request, requirements, provider)
            try:
                return await self._with_fallback(request, queue)
            except NoCandidate:
                delay = await self.rate_wait(request, requirements, provider)
                if delay is None or waited + delay > self.max_rate_wait:
                    raise
            log.info(
                "waiting for a rate limit", extra={"action": "llm.rate_wait", "seconds": round(delay, 3)}
            )
            await self._sleep(delay)
            waited += delay

    async def _with_fallback(self, request: ChatRequest, queue: list[Candidate]) -> ChatResponse:
        attempts: list[tuple[str, str]] = []
        while queue:
            cand = queue.pop(0)
            try:
                return await self._with_retries(cand, request)
            except LLMError as exc:
                queue = self._after_failure(cand, exc, queue, attempts)
        raise NoCandidate("no model could serve the request", attempts)

    def _after_failure(
        self, cand: Candidate, exc: LLMError, queue: list[Candidate], attempts: list[tuple[str, str]]
    ) -> list[Candidate]:
        """The candidates left after ``cand`` failed for good; raises when falling back cannot help."""
        if decide(exc, self.policy.attempts_per_candidate, self.policy).action == "raise":
            raise exc
        attempts.append((f"{cand.provider}/{cand.model}", str(exc)))
        log.info(
            "falling back",
            extra={
                "action": "llm.fallback",
                "provider": cand.provider,
                "model": cand.model,
                "error": str(exc),
            },
        )
        if isinstance(exc, ContextLengthExceeded):
            return larger_windows(queue, exc)
        return [c for c in queue if self.available(c)]

    async def _with_retries(self, cand: Candidate, request: ChatRequest) -> ChatResponse:
        attempt = 0
        while True:
            try:
                return await self._call_once(cand, request)
            except LLMError as exc:
                decision = decide(exc, attempt, self.policy)
                if decision.action != "retry" or not self.available(cand):
                    raise
                await self._sleep(decision.delay)
                attempt += 1

    async def _within_budget(self) -> None:
        """No new call for a job whose budget is spent (the sink knows the budgets)."""
        if self.sink is None:
            return
        context = current_call_context()
        if context.job_id is None:
            return
        try:
            why = await self.sink.budget_spent(context)
        except Exception as exc:  # the database is out of reach: the next recorded call will tell
            log.warning("could not check the budget: %s", exc, extra={"action": "llm.budget_error"})
            return
        if why is not None:
            raise BudgetReached(f"job {context.job_id}: {why}")

    async def _call_once(self, cand: Candidate, request: ChatRequest) -> ChatResponse:
        await self._within_budget()
        ticket = await self._admit(cand, request)
        breaker = self.breakers[cand.provider]
        breaker.begin()
        started = time.monotonic()
        try:
            with self._span(cand, request) as span:
                asked = dataclasses.replace(request, model=cand.model)
                reply = await self.providers[cand.provider].chat(asked)
                _traced_reply(span, reply.model, reply.usage, reply.finish_reason)
        except LLMError as exc:
            failed = self._record_failure(cand, exc, started)
            await self._tell_fleet(cand, exc)
            await self._persist(cand, failed)
            raise
        finally:
            breaker.settle()
        record = CallRecord(cand.provider, cand.model, True, time.monotonic() - started, usage=reply.usage)
        self._record(cand, record)
        await self._settle(ticket, reply.usage)
        await self._persist(cand, record)
        return reply

    # -- the fleet's shared limits --

    async def _admit(self, cand: Candidate, request: ChatRequest) -> int | None:
        """Wait for the fleet's capacity on ``cand`` (never longer than ``max_rate_wait``); the slot's
        ticket. A candidate the fleet holds back longer raises ``RateLimited`` (or ``ProviderUnavailable``
        when a worker's breaker marked it down), which the caller falls back on like any other."""
        if self.shared is None:
            return None
        quota = self.entries[cand.provider].quota
        tokens = estimate_tokens(request.prompt_chars(), request.max_tokens)
        waited = 0.0
        while True:
            try:
                admission = await self.shared.acquire(cand.provider, cand.model, quota, tokens=tokens)
            except Exception as exc:  # the database is out of reach: go on with this process's limits
                log.warning("shared limits unavailable: %s", exc, extra={"action": "llm.limits_error"})
                return None
            if admission.granted:
                return admission.ticket
            if admission.down:
                self.breakers[cand.provider].open_for(admission.wait)
                raise ProviderUnavailable(admission.why, provider=cand.provider, model=cand.model)
            if waited + admission.wait > self.max_rate_wait:
                self.cooldowns.cool(cand.provider, cand.model, admission.wait)
                raise RateLimited(admission.why, provider=cand.provider, model=cand.model, retry_after=0.0)
            log.info(
                "waiting for the fleet's capacity",
                extra={
                    "action": "llm.limit_wait",
                    "provider": cand.provider,
                    "seconds": round(admission.wait, 3),
                },
            )
            await self._sleep(admission.wait)
            waited += admission.wait

    async def _settle(self, ticket: int | None, usage: Usage | None) -> None:
        if self.shared is None or ticket is None or usage is None:
            return
        with contextlib.suppress(Exception):  # best effort: the estimate stays in the window
            await self.shared.settle(ticket, usage.total_tokens)

    async def _tell_fleet(self, cand: Candidate, exc: LLMError) -> None:
        """A 429 holds the whole fleet back for its ``Retry-After``; a breaker that just opened marks
        the provider down for every worker, for its cooldown."""
        if self.shared is None:
            return
        try:
            if isinstance(exc, RateLimited):
                await self.shared.block(cand.provider, cand.model, exc.retry_after or DEFAULT_COOLDOWN)
            breaker = self.breakers[cand.provider]
            if counts_against_breaker(exc) and breaker.state == "open":
                await self.shared.mark_down(cand.provider, breaker.cooldown)
        except Exception as exc2:  # the database is out of reach: this process still learned it
            log.warning("shared limits unavailable: %s", exc2, extra={"action": "llm.limits_error"})

    # -- streaming --

    def stream(
        self, request: ChatRequest, *, requirements: Requirements | None = None, provider: str | None = None
    ) -> ManagedStream:
        """A stream that falls back transparently until its first event, and says so after."""
        return ManagedStream(self, request, requirements, provider)

    async def _stream_events(
        self,
        holder: ManagedStream,
        request: ChatRequest,
        requirements: Requirements | None,
        provider: str | None,
    ) -> AsyncGenerator[StreamEvent, None]:
        await self._within_budget()
        queue = await self.candidates(request, requirements, provider)
        attempts: list[tuple[str, str]] = []
        while queue:
            cand = queue.pop(0)
            attempt = 0
            while True:
                try:
                    ticket = await self._admit(cand, request)
                except LLMError as exc:
                    queue = self._after_failure(cand, exc, queue, attempts)
                    break
                started = time.monotonic()
                inner = self.providers[cand.provider].stream(dataclasses.replace(request, model=cand.model))
                holder.current = inner
                self.breakers[cand.provider].begin()
                try:
                    # Never the current span: the context may change between the steps of a generator.
                    with self._span(cand, request, streamed=True) as span:
                        async with inner:
                            async for event in inner:
                                yield event
                        _traced_reply(span, inner.model, inner.usage, inner.finish_reason)
                except LLMError as exc:
                    cause = exc.__cause__ if isinstance(exc, StreamInterrupted) else exc
                    failure = cause if isinstance(cause, LLMError) else exc
                    failed = self._record_failure(cand, failure, started, inner)
                    await self._tell_fleet(cand, failure)
                    await self._persist(cand, failed)
                    if isinstance(exc, StreamInterrupted):
                        raise
                    if inner.content_started:
                        raise StreamInterrupted(inner.response, exc) from exc
                    decision = decide(exc, attempt, self.policy)
                    if decision.action == "retry" and self.available(cand):
                        await self._sleep(decision.delay)
                        attempt += 1
                        continue
                    queue = self._after_failure(cand, exc, queue, attempts)
                    break
                finally:
                    self.breakers[cand.provider].settle()
                record = CallRecord(
                    cand.provider,
                    cand.model,
                    True,
                    time.monotonic() - started,
                    first_event_s=inner.first_event_s,
                    usage=inner.usage,
                    streamed=True,
                )
                self._record(cand, record)
                await self._settle(ticket, inner.usage)
                await self._persist(cand, record)
                return
        raise NoCandidate("no model could serve the request", attempts)

    # -- records --

    def _span(
        self, cand: Candidate, request: ChatRequest, *, streamed: bool = False
    ) -> contextlib.AbstractContextManager[tracing.Span]:
        """The call's span (GenAI conventions), a child of the attempt's; nothing when not tracing."""
        provider = self.providers[cand.provider]
        return tracing.chat_span(
            provider=cand.provider,
            kind=provider.kind,
            model=cand.model,
            base_url=getattr(provider, "base_url", None),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            streamed=streamed,
        )

    def _record(self, cand: Candidate, record: CallRecord) -> None:
        self.records.append(record)
        if record.ok:
            self.breakers[cand.provider].record_success()
            sample = record.first_event_s if record.streamed and record.first_event_s else record.latency_s
            key = (cand.provider, cand.model)
            old = self.latency.get(key)
            self.latency[key] = sample if old is None else (1 - LATENCY_ALPHA) * old + LATENCY_ALPHA * sample
        usage = record.usage or Usage()
        log.info(
            "llm call",
            extra={
                "action": "llm.call",
                "provider": record.provider,
                "model": record.model,
                "ok": record.ok,
                "latency_s": round(record.latency_s, 4),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "error": record.error,
            },
        )

    async def _persist(self, cand: Candidate, record: CallRecord) -> None:
        """Hand the call to the sink with the attempt it was made for and its cost (best effort: a
        record lost to a database outage must not fail the call)."""
        context = current_call_context()
        if self.sink is None and context.tally is None:
            return
        usage = record.usage or Usage()
        entry = self.entries[cand.provider]
        cost = call_cost(
            entry.provider.kind,
            record.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            entry.price,
        )
        if context.tally is not None:
            context.tally.add(usage.prompt_tokens + usage.completion_tokens, cost)
        if self.sink is None:
            return
        try:
            await self.sink.record_call(
                context,
                provider=record.provider,
                model=record.model,
                ok=record.ok,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                latency_s=record.latency_s,
                first_token_s=record.first_event_s,
                error=record.error,
                cost_usd=cost,
            )
        except Exception as exc:
            log.warning("could not record an LLM call: %s", exc, extra={"action": "llm.record_error"})

    def _record_failure(
        self, cand: Candidate, exc: LLMError, started: float, inner: ChatStream | None = None
    ) -> CallRecord:
        if counts_against_breaker(exc):
            self.breakers[cand.provider].record_failure()
        if isinstance(exc, RateLimited):
            self.cooldowns.cool(cand.provider, cand.model, exc.retry_after or DEFAULT_COOLDOWN)
        record = CallRecord(
            cand.provider,
            cand.model,
            False,
            time.monotonic() - started,
            first_event_s=inner.first_event_s if inner else None,
            usage=inner.usage if inner else None,
            error=f"{type(exc).__name__}: {exc}",
            streamed=inner is not None,
        )
        self._record(cand, record)
        return record


class ManagedStream:
    """The manager's stream: an async context manager and iterator of events; ``current`` is the provider
    stream in use (its ``response`` is the reply so far)."""

    def __init__(
        self,
        manager: LLMManager,
        request: ChatRequest,
        requirements: Requirements | None,
        provider: str | None,
    ) -> None:
        self.current: ChatStream | None = None
        self._events = manager._stream_events(self, request, requirements, provider)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._events.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        return await anext(self._events)

    @property
    def response(self) -> ChatResponse | None:
        return self.current.response if self.current else None


def _traced_reply(span: tracing.Span, model: str, usage: Usage | None, finish_reason: str | None) -> None:
    if span.is_recording():
        found = usage or Usage()
        tracing.chat_result(
            span,
            model=model,
            input_tokens=found.prompt_tokens,
            output_tokens=found.completion_tokens,
            cached_tokens=found.cached_tokens,
            finish_reason=finish_reason,
        )
