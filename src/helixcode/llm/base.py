"""The provider interface and the stream object every provider returns.

A provider is async and owns its connections: ``chat`` answers whole, ``stream`` returns a :class:`ChatStream`
(an async context manager that always closes the connection, and enforces the first-token and idle-gap
deadlines apart from the total), ``list_models`` and ``health`` are cheap unbilled probes.

    async with provider.stream(request) as events:
        async for event in events:
            ...
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import ClassVar, Self

from helixcode.llm.errors import LLMError, ProviderTimeout, Refusal, StreamInterrupted
from helixcode.llm.types import (
    ChatRequest,
    ChatResponse,
    Deadlines,
    Done,
    FinishReason,
    HealthStatus,
    ModelCapabilities,
    ModelInfo,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDone,
    Usage,
    UsageEvent,
)

__all__ = ["ChatStream", "Provider", "collect"]


class ChatStream:
    """Typed events from one streamed reply; also accumulates them so a partial reply can be reported.

    The source is an async generator whose ``finally``/``async with`` closes the HTTP response; leaving the
    ``async with`` block (normally, by error or by cancellation) closes the generator and so the connection.
    """

    def __init__(
        self,
        source: AsyncGenerator[StreamEvent, None],
        *,
        provider: str,
        model: str,
        deadlines: Deadlines,
    ) -> None:
        self._source = source
        self.provider = provider
        self.model = model
        self._deadlines = deadlines
        self._started = time.monotonic()
        self._texts: list[str] = []
        self._calls: dict[int, ToolCall] = {}
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.first_event_s: float | None = None
        self.events = 0

    async def __aenter__(self) -> Self:
        self._started = time.monotonic()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._source.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            event = await self._next()
        except StreamInterrupted:
            raise
        except LLMError as exc:
            if self.content_started:  # the caller may have shown some of it: say so, with what arrived
                raise StreamInterrupted(self.response, exc) from exc
            raise
        self._record(event)
        return event

    async def _next(self) -> StreamEvent:
        limit, which = self._next_limit()
        try:
            async with asyncio.timeout(limit) as scope:
                return await anext(self._source)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise ProviderTimeout(
                f"no {which} within {limit:.3g}s", provider=self.provider, model=self.model
            ) from exc

    def _next_limit(self) -> tuple[float | None, str]:
        d = self._deadlines
        gap, which = (d.idle, "event") if self.events else (d.first_token, "first token")
        if d.total is None:
            return gap, which
        left = max(0.0, d.total - (time.monotonic() - self._started))
        return (left, "end of reply") if gap is None or left < gap else (gap, which)

    def _record(self, event: StreamEvent) -> None:
        if self.events == 0:
            self.first_event_s = time.monotonic() - self._started
        self.events += 1
        match event:
            case TextDelta(text=text):
                self._texts.append(text)
            case ToolCallDone(index=index, call=call):
                self._calls[index] = call
            case UsageEvent(usage=usage):
                self.usage = usage
            case Done(finish_reason=reason, model=model):
                self.finish_reason = reason
                self.model = model or self.model

    @property
    def content_started(self) -> bool:
        """Whether anything a caller could have shown has arrived (text or a tool-call fragment)."""
        return self.events > 0

    @property
    def response(self) -> ChatResponse:
        """Everything received so far as one response (complete once ``Done`` has arrived)."""
        return ChatResponse(
            content="".join(self._texts),
            tool_calls=tuple(self._calls[i] for i in sorted(self._calls)),
            finish_reason=self.finish_reason or "error",
            usage=self.usage,
            model=self.model,
            provider=self.provider,
        )


async def collect(stream: ChatStream) -> ChatResponse:
    """Drain a stream into a response; a refusal becomes :class:`Refusal`. Nobody saw a partial reply
    here, so a stream cut after content raises its cause (a connection drop, a context overflow), which
    the manager can retry or fall back on, rather than ``StreamInterrupted``."""
    try:
        async with stream:
            async for _ in stream:
                pass
    except StreamInterrupted as exc:
        if isinstance(exc.__cause__, LLMError):
            raise exc.__cause__ from exc
        raise
    response = stream.response
    if response.finish_reason == "refusal":
        raise Refusal(response.content or "the model refused", provider=stream.provider, model=stream.model)
    return response


class Provider(ABC):
    """One configured endpoint that serves one or more models."""

    kind: ClassVar[str] = "abstract"

    def __init__(
        self,
        name: str,
        *,
        models: Sequence[str] = (),
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.name = name
        self.models = list(models)
        self.configured_capabilities = capabilities
        self.deadlines = deadlines or Deadlines()

    def model_for(self, request: ChatRequest) -> str:
        """The model a request names, or the provider's first configured model."""
        return request.model or (self.models[0] if self.models else "")

    def deadlines_for(self, request: ChatRequest) -> Deadlines:
        return request.deadlines or self.deadlines

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer whole; the default drains :meth:`stream`."""
        return await collect(self.stream(request))

    @abstractmethod
    def stream(self, request: ChatRequest) -> ChatStream:
        """Stream the reply; nothing is sent until the stream is first iterated."""

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]:
        """Models served, with capabilities; no billed call."""

    @abstractmethod
    async def health(self) -> HealthStatus:
        """A cheap, unbilled probe; never raises for an unreachable server, returns ``ok=False``."""

    async def aclose(self) -> None:  # noqa: B027 - most providers have something to close, not all
        """Release connections and models."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
