"""Anthropic's Messages API over httpx + SSE (no SDK).

Streams are ``message_start``, per block ``content_block_start`` / ``content_block_delta`` (``text_delta`` or
``input_json_delta`` fragments of a tool call's input) / ``content_block_stop``, then ``message_delta`` (stop
reason, output tokens) and ``message_stop``; ``ping`` anywhere; ``error`` (e.g. ``overloaded_error``) may
arrive after the 200. Discovery uses ``GET /v1/models``, which is not billed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from helixcode.llm.base import ChatStream
from helixcode.llm.errors import ConnectionDropped, ServerError, from_http_status
from helixcode.llm.http import HttpProvider
from helixcode.llm.toolcalls import ToolCallAccumulator
from helixcode.llm.types import (
    ChatRequest,
    Deadlines,
    Done,
    FinishReason,
    HealthStatus,
    Message,
    ModelCapabilities,
    ModelInfo,
    NamedTool,
    StreamEvent,
    TextDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)

__all__ = ["API_VERSION", "AnthropicProvider", "EventDecoder", "build_messages_payload"]

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_CAPABILITIES = ModelCapabilities(tools=True, vision=True, json_schema=False, context_length=200_000)

_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}


def _content(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message.tool_calls
    ]
    return blocks


#: Anthropic's prompt-cache breakpoint marker.
EPHEMERAL = {"type": "ephemeral"}


def build_messages_payload(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The body of ``POST /v1/messages``: system apart, tool results as user turns, adjacent turns merged."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(_content(m))
        else:
            turns.append({"role": role, "content": _content(m)})
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "stream": stream,
    }
    # Prompt caching: the system prompt and the tools are the stable prefix of every round of an agent's
    # conversation; a cache breakpoint after each lets Anthropic serve them from its cache.
    if system:
        body["system"] = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        body["tools"][-1]["cache_control"] = EPHEMERAL
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "tool", "name": choice.name}
            if isinstance(choice, NamedTool)
            else {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}
        )
    optional = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop_sequences": list(request.stop) or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


class EventDecoder:
    """Turns Messages API stream events into ours (pure)."""

    def __init__(self, *, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.tools = ToolCallAccumulator()
        self.input_tokens = 0
        self.cached_tokens = 0
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.stopped = False

    def feed(self, event: str, data: Mapping[str, Any]) -> list[StreamEvent]:
        kind = data.get("type", event)
        if kind == "error":
            raise from_http_status(
                529 if (data.get("error") or {}).get("type") == "overloaded_error" else 500,
                json.dumps(data),
                provider=self.provider,
                model=self.model,
            )
        if kind == "message_start":
            msg = data.get("message") or {}
            self.model = str(msg.get("model") or self.model)
            usage = msg.get("usage") or {}
            # Anthropic counts cache reads and writes apart from input_tokens: all were in the prompt.
            self.cached_tokens = int(usage.get("cache_read_input_tokens") or 0)
            self.input_tokens = (
                int(usage.get("input_tokens") or 0)
                + self.cached_tokens
                + int(usage.get("cache_creation_input_tokens") or 0)
            )
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                return [self.tools.add(int(data["index"]), id=block.get("id"), name=block.get("name"))]
            if text := block.get("text"):
                return [TextDelta(text)]
        elif kind == "content_block_delta":
            part = data.get("delta") or {}
            if part.get("type") == "text_delta":
                return [TextDelta(str(part.get("text", "")))]
            if part.get("type") == "input_json_delta":
                return [self.tools.add(int(data["index"]), arguments=str(part.get("partial_json", "")))]
        elif kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            usage = data.get("usage") or {}
            self.output_tokens = int(usage.get("output_tokens") or self.output_tokens)
            self.input_tokens = int(usage.get("input_tokens") or self.input_tokens)
        elif kind == "message_stop":
            self.stopped = True
            return self._final()
        return []

    def _final(self) -> list[StreamEvent]:
        calls = self.tools.finish()
        events: list[StreamEvent] = [ToolCallDone(i, c) for i, c in enumerate(calls)]
        events.append(UsageEvent(Usage(self.input_tokens, self.output_tokens, self.cached_tokens)))
        events.append(Done(_STOP.get(self.stop_reason or "end_turn", "stop"), self.model))
        return events


class AnthropicProvider(HttpProvider):
    kind = "anthropic"

    def __init__(
        self,
        name: str,
        base_url: str = "https://api.anthropic.com",
        *,
        api_key: str | None = None,
        models: Sequence[str] = (),
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        super().__init__(
            name,
            base_url.rstrip("/").removesuffix("/v1"),
            api_key=api_key,
            headers=headers,
            models=models,
            capabilities=capabilities,
            deadlines=deadlines,
            transport=transport,
        )

    def stream(self, request: ChatRequest) -> ChatStream:
        return ChatStream(
            self._events(request),
            provider=self.name,
            model=self.model_for(request),
            deadlines=self.deadlines_for(request),
        )

    async def _events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = self.model_for(request)
        payload = build_messages_payload(request, model, stream=True)
        decoder = EventDecoder(provider=self.name, model=model)
        deadlines = self.deadlines_for(request)
        async with self._open_stream(
            "POST", "/v1/messages", json=payload, model=model, deadlines=deadlines
        ) as resp:
            try:
                async for sse in EventSource(resp).aiter_sse():
                    if not sse.data.strip():
                        continue
                    try:
                        data = json.loads(sse.data)
                    except ValueError as exc:
                        raise ServerError(
                            f"bad event: {sse.data[:200]!r}", provider=self.name, model=model
                        ) from exc
                    for event in decoder.feed(sse.event, data):
                        yield event
                    if decoder.stopped:
                        break
            except SSEError as exc:
                raise ServerError(f"not an event stream: {exc}", provider=self.name, model=model) from exc
        if not decoder.stopped:
            raise ConnectionDropped("stream ended before message_stop", provider=self.name, model=model)

    async def list_models(self) -> list[ModelInfo]:
        body = await self._call("GET", "/v1/models?limit=100")
        names = [str(m["id"]) for m in body.get("data") or () if "id" in m]
        if self.models:
            names = [n for n in names if n in self.models] or list(self.models)
        caps = self.configured_capabilities or DEFAULT_CAPABILITIES
        return [ModelInfo(n, self.name, caps) for n in names]

    async def health(self) -> HealthStatus:
        return await self._probe("GET", "/v1/models?limit=1")
