"""llama.cpp servers: ggml's ``llama-server`` and llama-cpp-python's ``python -m llama_cpp.server``.

Both speak the OpenAI-compatible API under ``/v1``; they differ in everything around it, so the flavour is
discovered from ``/health`` once:

- ``llama-server``: ``/health`` (503 while loading), ``/props`` (``n_ctx``, ``chat_template_caps``,
  ``modalities``) tell health and capabilities.
- llama-cpp-python: ``/health`` and ``/props`` are 404. It answers any model name with the loaded model, so
  the name is checked here; it fails ``tool_choice: "required"`` with a 500 and knows only ``json_object``
  (with a ``schema``) as response format, so requests are adapted; a streamed request that overflows the
  context gets a 200 with an empty body, so the error is asked for again without streaming.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal

import httpx

from helixcode.llm.errors import ConnectionDropped, LLMError, ModelNotFound
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.types import (
    ChatRequest,
    Deadlines,
    HealthStatus,
    ModelCapabilities,
    ModelInfo,
    NamedTool,
    ToolChoice,
)

__all__ = [
    "Flavour",
    "LlamaCppProvider",
    "adapt_for_llama_cpp_python",
    "capabilities_from_props",
    "match_model",
]

log = logging.getLogger(__name__)

Flavour = Literal["llama.cpp", "llama-cpp-python"]


def capabilities_from_props(props: Mapping[str, Any], fallback: ModelCapabilities) -> ModelCapabilities:
    """Capabilities from ``GET /props``; keys a build lacks keep the configured value."""
    caps = props.get("chat_template_caps") or {}
    modalities = props.get("modalities") or {}
    settings = props.get("default_generation_settings") or {}
    n_ctx = props.get("n_ctx") or settings.get("n_ctx")
    tools = caps.get("supports_tool_calls", caps.get("supports_tools"))
    return ModelCapabilities(
        tools=bool(tools) if tools is not None else fallback.tools,
        vision=bool(modalities.get("vision", fallback.vision)),
        json_schema=True,
        embeddings=fallback.embeddings,
        streaming=True,
        context_length=int(n_ctx) if n_ctx else fallback.context_length,
    )


def adapt_for_llama_cpp_python(request: ChatRequest) -> ChatRequest:
    """llama-cpp-python fails ``tool_choice: "required"``: one tool can be forced by name, several cannot."""
    if request.tool_choice != "required":
        return request
    choice: ToolChoice = NamedTool(request.tools[0].name) if len(request.tools) == 1 else "auto"
    return dataclasses.replace(request, tool_choice=choice)


def match_model(wanted: str | None, served: Sequence[str]) -> str | None:
    """The served id a requested name means: exact, or the file name / stem of a served GGUF path."""
    if not served:
        return wanted
    if not wanted:
        return served[0]
    for sid in served:
        path = PurePath(sid)
        if wanted in (sid, path.name, path.stem):
            return sid
    return None


class LlamaCppProvider(OpenAICompatProvider):
    """A llama.cpp server at ``base_url`` (its root, not ``/v1``)."""

    kind = "llamacpp"
    api_prefix = "/v1"
    #: llama.cpp compiles the schema itself into a grammar (tuples and lengths included): send it whole.
    strict_mode = False

    def __init__(
        self,
        name: str,
        base_url: str = "http://127.0.0.1:8080",
        *,
        api_key: str | None = None,
        models: Sequence[str] = (),
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/").removesuffix("/v1")
        super().__init__(
            name,
            root,
            api_key=api_key,
            models=models,
            capabilities=capabilities,
            deadlines=deadlines,
            transport=transport,
        )
        self.flavour: Flavour | None = None
        self._served: list[str] | None = None
        self._props: Mapping[str, Any] | None = None
        self._lock = asyncio.Lock()

    def _fallback_caps(self) -> ModelCapabilities:
        return self.configured_capabilities or ModelCapabilities(tools=True, json_schema=True)

    async def _discover(self) -> None:
        """Learn the flavour, the served model and (llama-server) the props, once."""
        async with self._lock:
            if self.flavour is not None and self._served is not None:
                return
            try:
                self._props = await self._call("GET", "/props")
                self.flavour = "llama.cpp"
            except ModelNotFound:  # 404: llama-cpp-python has no /props
                self.flavour = "llama-cpp-python"
            body = await self._call("GET", "/v1/models")
            self._served = [
                str(m["id"]) for m in body.get("data") or () if isinstance(m, Mapping) and "id" in m
            ]
            log.info(
                "discovered llama.cpp server",
                extra={"action": "llm.discover", "provider": self.name, "flavour": self.flavour},
            )

    async def _prepare(self, request: ChatRequest) -> tuple[ChatRequest, str]:
        await self._discover()
        wanted = request.model or (self.models[0] if self.models else None)
        served = self._served or []
        model = match_model(wanted, served)
        if model is None:
            raise ModelNotFound(
                f"this server serves {served}, not {wanted!r}", provider=self.name, model=wanted
            )
        if self.flavour == "llama-cpp-python":
            request = adapt_for_llama_cpp_python(request)
        return request, model

    def _payload(
        self, request: ChatRequest, model: str, *, stream: bool, include_usage: bool = True
    ) -> dict[str, Any]:
        body = super()._payload(request, model, stream=stream, include_usage=include_usage)
        if self.flavour == "llama-cpp-python":
            if request.response_schema is not None:
                body["response_format"] = {"type": "json_object", "schema": request.response_schema.schema}
            # Its request model wants a string where OpenAI allows null (an assistant turn that only
            # called tools): null was a 422 on every agent round after the first.
            for message in body["messages"]:
                if message.get("content") is None:
                    message["content"] = ""
        if self.flavour == "llama.cpp":
            # Reuse the KV cache of the prompt's unchanged prefix (an agent's system prompt, task and
            # earlier rounds): only the new turn is evaluated.
            body["cache_prompt"] = True
        return body

    async def _diagnose_empty(self, request: ChatRequest, model: str) -> LLMError:
        if self.flavour != "llama-cpp-python":
            return await super()._diagnose_empty(request, model)
        # Ask once more without streaming: the error then comes back as a proper 4xx. The server hangs up
        # the connection the failed stream used, and the pool may hand that one out first: try twice.
        for _ in range(2):
            try:
                await self.chat(request)
            except ConnectionDropped:
                continue
            except LLMError as exc:
                return exc
            break
        return ConnectionDropped("empty stream from llama-cpp-python", provider=self.name, model=model)

    async def list_models(self) -> list[ModelInfo]:
        await self._discover()
        caps = self._fallback_caps()
        if self._props is not None:
            caps = capabilities_from_props(self._props, caps)
        return [ModelInfo(m, self.name, caps) for m in self._served or []]

    async def health(self) -> HealthStatus:
        """``/health`` on llama-server (503 while loading); ``/v1/models`` on llama-cpp-python."""
        if self.flavour != "llama-cpp-python":
            started = time.monotonic()
            try:
                await self._call("GET", "/health")
            except ModelNotFound:  # 404: llama-cpp-python
                self.flavour = "llama-cpp-python"
            except LLMError as exc:
                return HealthStatus(False, str(exc), time.monotonic() - started)
            else:
                return HealthStatus(True, "ok", time.monotonic() - started)
        return await self._probe("GET", "/v1/models")
