"""OpenAI-compatible chat completions: OpenAI, llama.cpp server, vLLM, LM Studio, Ollama's ``/v1``.

One implementation, configured by ``base_url`` (the URL that ends before ``/chat/completions``). The wire
translation (:func:`build_payload`, :class:`ChunkDecoder`) is pure so its quirks are unit-tested; the
provider only moves bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from helixcode.llm.base import ChatStream
from helixcode.llm.errors import (
    BadRequest,
    ConnectionDropped,
    LLMError,
    Refusal,
    ServerError,
    from_http_status,
)
from helixcode.llm.http import HttpProvider
from helixcode.llm.strict_schema import to_strict
from helixcode.llm.toolcalls import ToolCallAccumulator
from helixcode.llm.types import (
    ChatRequest,
    ChatResponse,
    Deadlines,
    Done,
    FinishReason,
    HealthStatus,
    Message,
    ModelCapabilities,
    ModelInfo,
    NamedTool,
    ResponseSchema,
    StreamEvent,
    TextDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)

__all__ = [
    "ChunkDecoder",
    "OpenAICompatProvider",
    "build_payload",
    "decode_completion",
    "finish_reason",
    "response_format",
    "wire_message",
]

log = logging.getLogger(__name__)

DEFAULT_CAPABILITIES = ModelCapabilities(tools=True, json_schema=True, streaming=True)


def wire_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.raw_arguments or json.dumps(call.arguments),
                },
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    return out


def response_format(rs: ResponseSchema, *, strict_mode: bool) -> dict[str, Any]:
    """``response_format`` for a schema. Where the server has OpenAI's strict mode (``strict_mode``) and
    the caller wants it, the schema is rewritten into strict mode's subset (:func:`to_strict`); a schema
    with no strict equivalent goes as it is, without strict. Other servers get it unchanged."""
    schema, strict = rs.schema, rs.strict
    if strict_mode:
        converted = to_strict(rs.schema) if rs.strict else None
        schema, strict = (converted, True) if converted is not None else (rs.schema, False)
    return {"type": "json_schema", "json_schema": {"name": rs.name, "schema": schema, "strict": strict}}


def build_payload(
    request: ChatRequest,
    model: str,
    *,
    stream: bool,
    include_usage: bool = True,
    strict_mode: bool = False,
) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``; ``strict_mode``: see :func:`response_format`."""
    body: dict[str, Any] = {"model": model, "messages": [wire_message(m) for m in request.messages]}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in request.tools
        ]
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if isinstance(choice, NamedTool)
            else choice
        )
    if request.response_schema is not None:
        body["response_format"] = response_format(request.response_schema, strict_mode=strict_mode)
    optional = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def finish_reason(raw: str | None, has_calls: bool) -> FinishReason:
    """Normalise a wire finish reason; the calls present decide, not what the server claims."""
    if raw == "length":
        return "length"
    if raw == "content_filter":
        return "content_filter"
    if has_calls:
        return "tool_calls"
    return "stop"


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, Mapping):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return Usage(
        int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0), int(cached or 0)
    )


class ChunkDecoder:
    """Turns ``chat.completion.chunk`` objects into events (pure; one per stream)."""

    def __init__(self, model: str = "") -> None:
        self.tools = ToolCallAccumulator()
        self.raw_finish: str | None = None
        self.model = model
        self.refusal = ""

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        self.model = str(chunk.get("model") or self.model)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                events.append(TextDelta(text))
            if refusal := delta.get("refusal"):
                self.refusal += refusal
            for tc in delta.get("tool_calls") or ():
                fn = tc.get("function") or {}
                events.append(
                    self.tools.add(
                        tc.get("index"), id=tc.get("id"), name=fn.get("name"), arguments=fn.get("arguments")
                    )
                )
            if reason := choice.get("finish_reason"):
                self.raw_finish = reason
        if usage := _usage(chunk.get("usage")):
            events.append(UsageEvent(usage))
        return events

    def finish(self) -> list[StreamEvent]:
        calls = self.tools.finish()
        events: list[StreamEvent] = [ToolCallDone(i, c) for i, c in enumerate(calls)]
        reason = "refusal" if self.refusal else finish_reason(self.raw_finish, bool(calls))
        events.append(Done(reason, self.model))
        return events


def decode_completion(body: Mapping[str, Any], *, provider: str, model: str) -> ChatResponse:
    """A non-streamed ``chat.completion`` as a response (tool-call arguments parsed the same way)."""
    choices = body.get("choices") or []
    if not choices:
        raise ServerError("reply has no choices", provider=provider, model=model)
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        raise Refusal(str(message["refusal"]), provider=provider, model=model)
    acc = ToolCallAccumulator()
    for i, tc in enumerate(message.get("tool_calls") or ()):
        fn = tc.get("function") or {}
        acc.add(i, id=tc.get("id"), name=fn.get("name"), arguments=fn.get("arguments"))
    calls = acc.finish()
    return ChatResponse(
        content=message.get("content") or "",
        tool_calls=tuple(calls),
        finish_reason=finish_reason(choice.get("finish_reason"), bool(calls)),
        usage=_usage(body.get("usage")),
        model=str(body.get("model") or model),
        provider=provider,
    )


class OpenAICompatProvider(HttpProvider):
    """Any server speaking OpenAI's chat completions with SSE streaming."""

    kind = "openai"
    #: Path prefix before ``/chat/completions`` and ``/models`` (llama.cpp keeps its own routes at the root).
    api_prefix = ""
    #: Response schemas go in OpenAI's strict mode (rewritten into its subset; see ``strict_schema``).
    strict_mode = True

    def __init__(
        self,
        name: str,
        base_url: str = "https://api.openai.com/v1",
        *,
        api_key: str | None = None,
        models: Sequence[str] = (),
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        stream_usage: bool = True,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(
            name,
            base_url,
            api_key=api_key,
            headers=headers,
            models=models,
            capabilities=capabilities,
            deadlines=deadlines,
            transport=transport,
        )
        self.stream_usage = stream_usage

    # -- hooks for subclasses (llama.cpp) --

    async def _prepare(self, request: ChatRequest) -> tuple[ChatRequest, str]:
        """The request as it should be sent and the model to name."""
        return request, self.model_for(request)

    def _capabilities(self) -> ModelCapabilities:
        return self.configured_capabilities or DEFAULT_CAPABILITIES

    def _payload(
        self, request: ChatRequest, model: str, *, stream: bool, include_usage: bool = True
    ) -> dict[str, Any]:
        return build_payload(
            request, model, stream=stream, include_usage=include_usage, strict_mode=self.strict_mode
        )

    async def _diagnose_empty(self, request: ChatRequest, model: str) -> LLMError:
        """Why a stream ended before any chunk; servers that fail after sending 200 do not say."""
        return ConnectionDropped(
            "stream ended before the reply was complete", provider=self.name, model=model
        )

    # -- interface --

    async def chat(self, request: ChatRequest) -> ChatResponse:
        request, model = await self._prepare(request)
        deadlines = self.deadlines_for(request)
        body = await self._call(
            "POST",
            f"{self.api_prefix}/chat/completions",
            json=self._payload(request, model, stream=False),
            model=model,
            timeout=self._timeout(deadlines, streaming=False),
        )
        return decode_completion(body, provider=self.name, model=model)

    def stream(self, request: ChatRequest) -> ChatStream:
        return ChatStream(
            self._events(request),
            provider=self.name,
            model=self.model_for(request),
            deadlines=self.deadlines_for(request),
        )

    async def _events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        request, model = await self._prepare(request)
        try:
            async for event in self._sse(request, model, include_usage=self.stream_usage):
                yield event
        except BadRequest as exc:
            # Older servers reject stream_options; learn that once and ask again without it.
            if not (self.stream_usage and "stream_options" in str(exc)):
                raise
            log.info(
                "server rejects stream_options",
                extra={"action": "llm.no_stream_usage", "provider": self.name},
            )
            self.stream_usage = False
            async for event in self._sse(request, model, include_usage=False):
                yield event

    async def _sse(
        self, request: ChatRequest, model: str, *, include_usage: bool
    ) -> AsyncGenerator[StreamEvent, None]:
        payload = self._payload(request, model, stream=True, include_usage=include_usage)
        decoder = ChunkDecoder(model)
        done = False
        chunks = 0
        deadlines = self.deadlines_for(request)
        path = f"{self.api_prefix}/chat/completions"
        async with self._open_stream("POST", path, json=payload, model=model, deadlines=deadlines) as resp:
            try:
                async for sse in EventSource(resp).aiter_sse():
                    if sse.data.strip() == "[DONE]":
                        done = True
                        break
                    if not sse.data.strip():
                        continue
                    chunk = self._parse_chunk(sse.data, model)
                    chunks += 1
                    for event in decoder.feed(chunk):
                        yield event
            except SSEError as exc:
                raise ServerError(f"not an event stream: {exc}", provider=self.name, model=model) from exc
        if not done and decoder.raw_finish is None:
            if chunks == 0:
                raise await self._diagnose_empty(request, model)
            raise ConnectionDropped(
                "stream ended before the reply was complete", provider=self.name, model=model
            )
        for event in decoder.finish():
            yield event

    def _parse_chunk(self, data: str, model: str) -> Mapping[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ServerError(f"bad chunk: {data[:200]!r}", provider=self.name, model=model) from exc
        if isinstance(chunk, Mapping) and "error" in chunk and not chunk.get("choices"):
            raise _stream_error(chunk, provider=self.name, model=model)
        if not isinstance(chunk, Mapping):
            raise ServerError(f"bad chunk: {data[:200]!r}", provider=self.name, model=model)
        return chunk

    async def list_models(self) -> list[ModelInfo]:
        body = await self._call("GET", f"{self.api_prefix}/models")
        names = [str(m["id"]) for m in body.get("data") or () if isinstance(m, Mapping) and "id" in m]
        if self.models:
            names = [n for n in names if n in self.models] or list(self.models)
        caps = self._capabilities()
        return [ModelInfo(n, self.name, caps) for n in names]

    async def health(self) -> HealthStatus:
        return await self._probe("GET", f"{self.api_prefix}/models")


def _stream_error(chunk: Mapping[str, Any], *, provider: str, model: str) -> LLMError:
    """An error sent inside a 200 stream: map it as if it had its own status."""
    err = chunk.get("error")
    status = 500
    if isinstance(err, Mapping):
        code = err.get("code")
        if isinstance(code, int) and 400 <= code < 600:
            status = code
        elif isinstance(code, str) and code.isdigit():
            status = int(code)
    return from_http_status(status, json.dumps(chunk), provider=provider, model=model)
