"""OpenTelemetry traces, optional: one trace per job, from the request that submitted it to every model
call, tool call and git command of every attempt, on whichever worker ran it.

::

    POST /api/v1/jobs                       the API's request span (FastAPI's own), child of the caller's
    └── job.submit                          TaskManager.submit: helix.job.id, helix.job.name, helix.job.tasks
        ├── task.claim                      one per claimed task: the claim statement, the time it waited
        └── task.attempt                    helix.job.id, helix.task.key, helix.task.type, helix.attempt,
            │                               helix.worker.id; helix.task.outcome, an error status on failure
            ├── git worktree                agent/gitcmd.py: every git command the worker runs
            ├── chat gpt-4o-mini            the GenAI conventions: gen_ai.request.model, gen_ai.usage.*
            └── execute_tool write_file     gen_ai.tool.name, gen_ai.tool.call.id

The submit span's W3C ``traceparent`` is stored with the job (``jobs.trace_context``) and handed to the
worker with each claim, so an attempt that starts hours later on another host is still a child of it.
A job submitted without tracing has none: each of its attempts is then the root of a trace of its own.

Turned on by ``[tracing] enabled = true`` with the ``otel`` extra installed (``configure``, called by
the CLI once its settings are loaded); spans go to an OTLP/HTTP collector through a batch processor,
flushed when a worker stops and when the process exits. Off, which is the default, nothing here imports
OpenTelemetry: every helper reads one module global and returns a shared null context manager, a span
that records nothing, ``None`` or an empty dict. Callers build no attributes themselves: the helpers take
what they need and build the attributes only when tracing is on.

Tests install an exporter of their own (the SDK's ``InMemorySpanExporter``) with
``configure(settings, exporter=...)``: its spans are exported synchronously, as each ends.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from helixcode import __version__
from helixcode.errors import ConfigError
from helixcode.logsetup import redact_text

if TYPE_CHECKING:
    from helixcode.config import TracingSettings
    from helixcode.domain.models import Claim

__all__ = [
    "Span",
    "active",
    "adopt_environment",
    "attempt_span",
    "chat_result",
    "chat_span",
    "configure",
    "environment",
    "failed",
    "flush",
    "git_span",
    "headers",
    "http_span",
    "outcome",
    "shutdown",
    "submit_span",
    "tool_result",
    "tool_span",
    "traceparent",
    "tracer_provider",
]

EXTRA_HINT = "pip install 'helixcode[otel]'"
#: Outcomes of an attempt (``worker.runtime``) that mark its span as an error.
FAILED_OUTCOMES = frozenset({"failed", "retried", "lease_lost"})
#: Longest a process waits at exit for its last spans to be exported: a collector that does not answer
#: must not hold a command (the exporter itself retries for up to 10 s).
EXIT_FLUSH_SECONDS = 3.0
_DESCRIPTION_CHARS = 500
_COMMAND_CHARS = 300


class Span(Protocol):
    """What callers may do with a span the helpers give them (one that records nothing when off)."""

    def set_attribute(self, key: str, value: Any) -> None: ...

    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...

    def set_status(self, status: Any, description: str | None = None) -> None: ...

    def is_recording(self) -> bool: ...


class _NoSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def set_status(self, status: Any, description: str | None = None) -> None:
        pass

    def is_recording(self) -> bool:
        return False


_NO_SPAN: Span = _NoSpan()
#: What every span helper returns when tracing is off: reusable, it yields ``_NO_SPAN``.
_OFF: contextlib.nullcontext[Span] = contextlib.nullcontext(_NO_SPAN)


class _State:
    """The process's tracing while it is on. OpenTelemetry loads, and the provider is built, when the
    first span starts: a command that traces nothing (``helix progress`` inside a shell task, where the
    worker's ``TRACEPARENT`` is set) pays nothing for it."""

    def __init__(self, settings: TracingSettings, exporter: Any, provider: Any) -> None:
        self.settings = settings
        self.exporter = exporter
        self.provider = provider
        self.owned = provider is None  # ours to flush and shut down (not an embedder's provider)
        #: ``TRACEPARENT`` of the environment: the parent of spans that would otherwise start a trace.
        self.adopted: str | None = None
        self._tracer: Any = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._tracer is not None

    @property
    def tracer(self) -> Any:
        if self._tracer is None:
            with self._lock:  # git spans start in threads
                if self._tracer is None:
                    self._start()
        return self._tracer

    def _start(self) -> None:
        from opentelemetry import trace
        from opentelemetry.context import Context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.trace = trace
        self.empty = Context()
        self.w3c = TraceContextTextMapPropagator()
        if self.provider is None:
            self.provider = _provider(self.settings, self.exporter)
            atexit.register(self.close, EXIT_FLUSH_SECONDS)
        self._tracer = self.provider.get_tracer("helixcode", __version__)

    def close(self, timeout: float) -> None:
        """Export what is left (waiting at most ``timeout``) and stop, if the provider is ours."""
        if self.owned and self.started:
            atexit.unregister(self.close)
            _bounded(self.provider.shutdown, timeout)


_state: _State | None = None


def active() -> bool:
    """Whether spans are being recorded in this process."""
    return _state is not None


# -- turning it on and off ------------------------------------------------------------------------


def configure(settings: TracingSettings, *, exporter: Any = None, provider: Any = None) -> bool:
    """Turn tracing on or off for this process from ``settings``; returns whether it is on.

    On, spans go to an OTLP/HTTP exporter (``settings.endpoint``, else the ``OTEL_EXPORTER_OTLP_*``
    variables) through a batch processor. ``exporter`` (tests): spans go there instead, one by one as
    they end. ``provider``: an embedder's own ``TracerProvider``, used as it is and never shut down here.
    ``ConfigError`` names the extra to install when OpenTelemetry's SDK (or the exporter) is missing.
    """
    global _state
    shutdown()
    if not settings.enabled:
        return False
    if provider is None:
        needed = ["opentelemetry.sdk"]
        if exporter is None:
            needed.append("opentelemetry.exporter.otlp.proto.http")
        missing = [name for name in needed if not _installed(name)]
        if missing:
            raise ConfigError(f"tracing.enabled needs {', '.join(missing)}: {EXTRA_HINT}")
    _state = _State(settings, exporter, provider)
    return True


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _provider(settings: TracingSettings, exporter: Any) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
    # A job's attempts follow the sampling decision of its submit span (carried in its traceparent).
    sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)  # see _State.close
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings.endpoint)))
    return provider


def _otlp_exporter(endpoint: str | None) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint is None:
        return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else http://localhost:4318
    return OTLPSpanExporter(endpoint=traces_url(endpoint))


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: ``/v1/traces`` added to a base URL, as OTLP's own variable does."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def shutdown() -> None:
    """Turn tracing off, exporting what is left first."""
    global _state
    state, _state = _state, None
    if state is not None:
        state.close(EXIT_FLUSH_SECONDS)


def flush(timeout: float = EXIT_FLUSH_SECONDS) -> None:
    """Export the spans still waiting in the batch (a worker that stops; blocks up to ``timeout``)."""
    state = _state
    if state is not None and state.started:
        _bounded(state.provider.force_flush, timeout)


def _bounded(export: Callable[[], object], timeout: float) -> None:
    """Run ``export`` for at most ``timeout`` seconds: the SDK's own flush waits for the exporter's
    retries, whatever timeout it is given. A daemon thread left behind dies with the process."""
    thread = threading.Thread(target=export, name="helix-tracing-export", daemon=True)
    thread.start()
    thread.join(timeout)


def tracer_provider() -> Any:
    """This process's ``TracerProvider`` while tracing is on (for libraries that trace on their own:
    FastAPI's request spans), else None."""
    state = _state
    if state is None:
        return None
    state.tracer  # noqa: B018 - builds the provider
    return state.provider


# -- context: carried in the job row, HTTP headers and child processes' environment ---------------


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (or of the adopted ``TRACEPARENT`` outside any
    span), or None: tracing off, or no span."""
    state = _state
    if state is None:
        return None
    if not state.started:
        return state.adopted
    found = state.trace.get_current_span().get_span_context()
    if not found.is_valid:
        return state.adopted
    return f"00-{found.trace_id:032x}-{found.span_id:016x}-{int(found.trace_flags):02x}"


def headers() -> dict[str, str]:
    """HTTP headers that carry the current span to a server (``traceparent``); empty when off."""
    parent = traceparent()
    return {} if parent is None else {"traceparent": parent}


def environment() -> dict[str, str]:
    """Environment variables that carry the current span to a child process (``TRACEPARENT``, the
    OpenTelemetry convention for environment carriers); empty when off."""
    parent = traceparent()
    return {} if parent is None else {"TRACEPARENT": parent}


def adopt_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Make this process's new traces children of ``TRACEPARENT`` when it is set (a CI job's trace, or
    the shell task that ran this command). For the CLI, once, after ``configure``."""
    state = _state
    if state is not None:
        state.adopted = environ.get("TRACEPARENT") or None


def _parent(state: _State, traceparent: str | None) -> Any:
    """The context a span continues: the given ``traceparent``, else none at all (a new trace), never
    whatever span happens to be current."""
    if not traceparent:
        return state.empty
    return state.w3c.extract({"traceparent": traceparent}, context=state.empty)


# -- spans ----------------------------------------------------------------------------------------


def _current(
    state: _State,
    name: str,
    attributes: Mapping[str, Any] | None,
    *,
    kind: str = "internal",
    context: Any = None,
) -> contextlib.AbstractContextManager[Span]:
    tracer = state.tracer
    started = tracer.start_as_current_span(
        name, context=_within(state, context), kind=state.trace.SpanKind[kind.upper()], attributes=attributes
    )
    return cast(contextlib.AbstractContextManager[Span], started)


def _within(state: _State, context: Any) -> Any:
    """The context a new span starts in: ``context`` if given; else the current one, or the adopted
    ``TRACEPARENT`` when no span is current."""
    if context is not None or state.adopted is None:
        return context
    if state.trace.get_current_span().get_span_context().is_valid:
        return None
    return _parent(state, state.adopted)


@contextlib.contextmanager
def _detached(state: _State, name: str, attributes: Mapping[str, Any], kind: str) -> Iterator[Span]:
    """A span that is never made current: safe around an async generator's ``yield`` (whose context
    may change between steps), for calls with nothing traced beneath them."""
    tracer = state.tracer
    started = tracer.start_span(
        name, context=_within(state, None), kind=state.trace.SpanKind[kind.upper()], attributes=attributes
    )
    try:
        yield cast(Span, started)
    except Exception as exc:
        failed(cast(Span, started), type(exc).__name__, str(exc))
        raise
    finally:
        started.end()


def failed(span: Span, error_type: str, description: str = "") -> None:
    """Mark ``span`` failed: ``error.type`` and an error status (its description redacted and cut)."""
    if not span.is_recording():
        return
    from opentelemetry.trace import StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, redact_text(description)[:_DESCRIPTION_CHARS] or None)


# -- the job's spans ------------------------------------------------------------------------------


def submit_span(name: str, tasks: int) -> contextlib.AbstractContextManager[Span]:
    """``job.submit``, current while the job is created (its ``traceparent`` is the job's); the caller
    adds ``helix.job.id`` once it is known."""
    state = _state
    if state is None:
        return _OFF
    return _current(state, "job.submit", {"helix.job.name": name, "helix.job.tasks": tasks})


def attempt_span(
    claim: Claim, worker_id: str, claimed: tuple[int, int] | None = None
) -> contextlib.AbstractContextManager[Span]:
    """``task.attempt``, current while the attempt runs, a child of the job's submit span; first, when
    ``claimed`` gives the claim's start and end (``time.time_ns``), a ``task.claim`` span beside it."""
    state = _state
    if state is None:
        return _OFF
    task = claim.task
    tracer = state.tracer
    parent = _parent(state, claim.trace_context)
    common = {
        "helix.job.id": task.job_id,
        "helix.task.id": task.id,
        "helix.task.key": task.key,
        "helix.task.type": task.type.value,
        "helix.attempt": claim.attempt,
        "helix.worker.id": worker_id,
    }
    if claimed is not None:
        extra = {}
        if task.ready_at is not None and task.started_at is not None:
            extra["helix.task.queue_wait_s"] = round(max(0.0, task.started_at - task.ready_at), 6)
        tracer.start_span(
            "task.claim", context=parent, attributes={**common, **extra}, start_time=claimed[0]
        ).end(end_time=claimed[1])
    return _current(state, "task.attempt", common, context=parent)


def outcome(name: str, error: str | None = None) -> None:
    """Record how the current attempt ended (``helix.task.outcome``); a failure marks its span."""
    state = _state
    if state is None or not state.started:
        return
    current = cast(Span, state.trace.get_current_span())
    current.set_attribute("helix.task.outcome", name)
    if name in FAILED_OUTCOMES:
        failed(current, name, error or "")


# -- what an attempt does -------------------------------------------------------------------------


def chat_span(
    *,
    provider: str,
    kind: str,
    model: str,
    base_url: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    streamed: bool = False,
) -> contextlib.AbstractContextManager[Span]:
    """``chat {model}``: one request to one provider, with the GenAI semantic conventions' attributes
    (``chat_result`` adds the reply's). ``kind`` is the provider's type (openai, anthropic, ollama...),
    ``provider`` its name in config."""
    state = _state
    if state is None:
        return _OFF
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": kind,
        "gen_ai.system": kind,  # the older name, still what many backends read
        "gen_ai.request.model": model,
        "helix.llm.provider": provider,
        "helix.llm.streamed": streamed,
    }
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if temperature is not None:
        attributes["gen_ai.request.temperature"] = temperature
    if base_url:
        parts = urlsplit(base_url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
            if parts.port:
                attributes["server.port"] = parts.port
    return _detached(state, f"chat {model}", attributes, "client")


def chat_result(
    span: Span,
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    finish_reason: str | None = None,
) -> None:
    """The reply's model and token counts on a ``chat_span``."""
    if not span.is_recording():
        return
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    if model:
        attributes["gen_ai.response.model"] = model
    if cached_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = cached_tokens
    if finish_reason:
        attributes["gen_ai.response.finish_reasons"] = (finish_reason,)
    span.set_attributes(attributes)


def tool_span(name: str, call_id: str | None = None) -> contextlib.AbstractContextManager[Span]:
    """``execute_tool {name}``: one tool call of an agent (``tool_result`` says whether it worked)."""
    state = _state
    if state is None:
        return _OFF
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
    }
    if call_id:
        attributes["gen_ai.tool.call.id"] = call_id
    return _current(state, f"execute_tool {name}", attributes)


def tool_result(span: Span, ok: bool, message: str = "") -> None:
    if not ok:
        failed(span, "tool_error", message)


def git_span(args: Sequence[str], scrub: Callable[[str], str]) -> contextlib.AbstractContextManager[Span]:
    """``git {subcommand}`` around one git command; ``scrub`` masks credentials in its command line."""
    state = _state
    if state is None:
        return _OFF
    command = redact_text(scrub(" ".join(("git", *args))))[:_COMMAND_CHARS]
    return _current(
        state, f"git {git_subcommand(args)}", {"process.executable.name": "git", "helix.git.command": command}
    )


#: Git's options that take the next word as their value, before the subcommand.
_GIT_VALUED = frozenset({"-c", "-C", "--git-dir", "--work-tree", "--namespace", "--config-env"})


def git_subcommand(args: Sequence[str]) -> str:
    """``("-C", "x", "worktree", "add")`` -> ``worktree``."""
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word in _GIT_VALUED:
            skip = True
        elif not word.startswith("-"):
            return word
    return "git"


def http_span(method: str, url: str) -> contextlib.AbstractContextManager[Span]:
    """A client span around one HTTP request to the REST API (``helix --server``); send ``headers()``
    with it, from inside."""
    state = _state
    if state is None:
        return _OFF
    attributes: dict[str, Any] = {"http.request.method": method, "url.full": redact_text(url)}
    parts = urlsplit(url)
    if parts.hostname:
        attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
    return _current(state, method, attributes, kind="client")
