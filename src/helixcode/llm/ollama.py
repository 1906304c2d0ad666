"""Ollama's native API: ``/api/chat`` (NDJSON), ``/api/tags``, ``/api/show``, ``/api/version``.

Why native rather than ``/v1``: ``/api/show`` tells capabilities and the trained context, and
``options.num_ctx`` can be set per request. Ollama's default window is small and it *silently drops* the
oldest messages of a prompt that does not fit, so ``num_ctx`` is always sent and the reply's
``prompt_eval_count`` is checked. Tool calls arrive whole with arguments as objects; an error can arrive as
an ``{"error": ...}`` line after a 200.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx

from helixcode.llm.base import ChatStream
from helixcode.llm.errors import (
    ConnectionDropped,
    ContextLengthExceeded,
    LLMError,
    ServerError,
    from_http_status,
)
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

__all__ = [
    "DEFAULT_NUM_CTX",
    "NdjsonDecoder",
    "OllamaProvider",
    "build_chat_payload",
    "capabilities_from_show",
    "silently_truncated",
]

#: The window asked for when neither config nor ``/api/show`` says; Ollama's own default is smaller.
DEFAULT_NUM_CTX = 8192
#: Characters per token: a generous figure, so the estimate is a lower bound on real prompts.
CHARS_PER_TOKEN = 4


def silently_truncated(prompt_chars: int, prompt_eval_count: int | None, num_ctx: int) -> bool:
    """Whether Ollama cut the prompt to fit ``num_ctx`` without saying so.

    A cached prefix makes ``prompt_eval_count`` smaller than the prompt, so a small count alone proves
    nothing; a prompt whose lower-bound size exceeds the window *and* that was evaluated short was cut.
    """
    if prompt_eval_count is None:
        return False
    estimate = prompt_chars // CHARS_PER_TOKEN
    return estimate > num_ctx and prompt_eval_count < estimate


def _wire_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


def build_chat_payload(request: ChatRequest, model: str, *, num_ctx: int, stream: bool) -> dict[str, Any]:
    """The body of ``POST /api/chat``. Ollama has no tool_choice: ``none`` drops the tools, a named tool
    is sent alone, ``required`` cannot be enforced."""
    options: dict[str, Any] = {"num_ctx": num_ctx}
    extra = {
        "num_predict": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": list(request.stop) or None,
    }
    options.update({k: v for k, v in extra.items() if v is not None})
    body: dict[str, Any] = {
        "model": model,
        "messages": [_wire_message(m) for m in request.messages],
        "stream": stream,
        "options": options,
    }
    tools = list(request.tools)
    if isinstance(request.tool_choice, NamedTool):
        tools = [t for t in tools if t.name == request.tool_choice.name]
    if tools and request.tool_choice != "none":
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in tools
        ]
    if request.response_schema is not None:
        body["format"] = request.response_schema.schema
    return body


def capabilities_from_show(show: Mapping[str, Any], num_ctx: int | None) -> ModelCapabilities:
    """Capabilities from ``POST /api/show``; the window is what will be asked for, not what was trained."""
    caps = set(show.get("capabilities") or ())
    trained = None
    for key, value in (show.get("model_info") or {}).items():
        if key.endswith(".context_length") and isinstance(value, int):
            trained = value
    window = num_ctx or min(trained or DEFAULT_NUM_CTX, DEFAULT_NUM_CTX)
    return ModelCapabilities(
        tools="tools" in caps,
        vision="vision" in caps,
        json_schema="completion" in caps,
        embeddings="embedding" in caps,
        streaming="completion" in caps,
        context_length=window,
    )


class NdjsonDecoder:
    """Turns ``/api/chat`` lines into events (pure)."""

    def __init__(self, *, provider: str, model: str, prompt_chars: int, num_ctx: int) -> None:
        self.provider = provider
        self.model = model
        self.prompt_chars = prompt_chars
        self.num_ctx = num_ctx
        self.tools = ToolCallAccumulator()
        self.done = False

    def feed(self, line: Mapping[str, Any]) -> list[StreamEvent]:
        if "error" in line:
            raise self._error(str(line["error"]))
        events: list[StreamEvent] = []
        message = line.get("message") or {}
        if text := message.get("content"):
            events.append(TextDelta(text))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            delta = self.tools.add_whole(
                id=call.get("id"), name=str(fn.get("name", "")), arguments=fn.get("arguments")
            )
            events.append(delta)
        if line.get("done"):
            self.done = True
            events.extend(self._final(line))
        return events

    def _final(self, line: Mapping[str, Any]) -> list[StreamEvent]:
        n_prompt = line.get("prompt_eval_count")
        if silently_truncated(self.prompt_chars, n_prompt, self.num_ctx):
            raise ContextLengthExceeded(
                self.prompt_chars // CHARS_PER_TOKEN,
                self.num_ctx,
                provider=self.provider,
                model=self.model,
                detail=f"Ollama evaluated only {n_prompt} prompt tokens",
            )
        calls = self.tools.finish()
        events: list[StreamEvent] = [ToolCallDone(i, c) for i, c in enumerate(calls)]
        events.append(UsageEvent(Usage(int(n_prompt or 0), int(line.get("eval_count") or 0))))
        reason: FinishReason = "length" if line.get("done_reason") == "length" else "stop"
        events.append(
            Done("tool_calls" if calls and reason == "stop" else reason, str(line.get("model") or self.model))
        )
        return events

    def _error(self, message: str) -> LLMError:
        status = 404 if "not found" in message.lower() else 500
        return from_http_status(
            status, json.dumps({"error": message}), provider=self.provider, model=self.model
        )


class OllamaProvider(HttpProvider):
    kind = "ollama"

    def __init__(
        self,
        name: str,
        base_url: str = "http://127.0.0.1:11434",
        *,
        models: Sequence[str] = (),
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
        num_ctx: int | None = None,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        root = base_url.rstrip("/").removesuffix("/v1")
        super().__init__(
            name,
            root,
            api_key=api_key,
            headers=headers,
            models=models,
            capabilities=capabilities,
            deadlines=deadlines,
            transport=transport,
        )
        self.num_ctx = num_ctx
        self._windows: dict[str, int] = {}

    def _window(self, model: str) -> int:
        return self.num_ctx or self._windows.get(model) or DEFAULT_NUM_CTX

    def stream(self, request: ChatRequest) -> ChatStream:
        return ChatStream(
            self._events(request),
            provider=self.name,
            model=self.model_for(request),
            deadlines=self.deadlines_for(request),
        )

    async def _events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        model = self.model_for(request)
        num_ctx = self._window(model)
        payload = build_chat_payload(request, model, num_ctx=num_ctx, stream=True)
        decoder = NdjsonDecoder(
            provider=self.name, model=model, prompt_chars=request.prompt_chars(), num_ctx=num_ctx
        )
        deadlines = self.deadlines_for(request)
        async with self._open_stream(
            "POST", "/api/chat", json=payload, model=model, deadlines=deadlines
        ) as resp:
            async for raw in resp.aiter_lines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError as exc:
                    raise ServerError(f"bad line: {raw[:200]!r}", provider=self.name, model=model) from exc
                for event in decoder.feed(line):
                    yield event
        if not decoder.done:
            raise ConnectionDropped("stream ended before done", provider=self.name, model=model)

    async def list_models(self) -> list[ModelInfo]:
        tags = await self._call("GET", "/api/tags")
        names = [str(m.get("name") or m.get("model")) for m in tags.get("models") or ()]
        if self.models:
            names = [n for n in names if n in self.models or n.removesuffix(":latest") in self.models]
        shows = await asyncio.gather(
            *(self._call("POST", "/api/show", json={"model": n}, model=n) for n in names)
        )
        out = []
        for name, show in zip(names, shows, strict=True):
            caps = self.configured_capabilities or capabilities_from_show(show, self.num_ctx)
            if caps.context_length:
                self._windows[name] = self._windows[name.removesuffix(":latest")] = caps.context_length
            out.append(ModelInfo(name, self.name, caps))
        return out

    async def health(self) -> HealthStatus:
        return await self._probe("GET", "/api/version")
