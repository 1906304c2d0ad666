"""``helixcode.tracing`` without a database: off it records nothing and loads nothing; on, the context
a job's spans carry (sampling, ``TRACEPARENT``), the attributes of its spans, and the extra's message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from helixcode import tracing
from helixcode.config import TracingSettings, load_settings
from helixcode.domain.enums import Criticality, Priority, TaskStatus, TaskType
from helixcode.domain.models import Claim, Task
from helixcode.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    yield found
    tracing.shutdown()


def claim(trace_context: str | None) -> Claim:
    task = Task(
        id=7,
        job_id="j1",
        key="build",
        type=TaskType.BUILDING,
        title="t",
        description="",
        priority=Priority.NORMAL,
        criticality=Criticality.NORMAL,
        status=TaskStatus.RUNNING,
        requires=(),
        depends_on=(),
        run={"builtin": "noop"},
        max_attempts=3,
        attempts=2,
        failures=1,
        lease_losses=0,
        timeout=None,
        progress=0.0,
        progress_message=None,
        parent_key=None,
        weight=1.0,
        created_at=1.0,
        ready_at=10.0,
        started_at=12.5,
        finished_at=None,
        next_attempt_at=None,
        lease_owner="w1",
        lease_expires_at=None,
        last_error=None,
    )
    return Claim(task, "token", 2, None, None, trace_context)


def test_off_it_records_nothing_and_every_helper_is_inert(exporter: InMemorySpanExporter) -> None:
    assert not tracing.configure(TracingSettings(enabled=False), exporter=exporter)
    assert not tracing.active()
    with tracing.submit_span("job", 1) as span:
        span.set_attribute("helix.job.id", "j1")
        assert tracing.traceparent() is None
    with tracing.attempt_span(claim(PARENT), "w1", (1, 2)), tracing.tool_span("finish", "c1") as tool:
        tracing.tool_result(tool, False, "boom")
        tracing.outcome("failed", "boom")
        assert tracing.headers() == tracing.environment() == {}
    with tracing.chat_span(provider="p", kind="openai", model="m") as chat:
        tracing.chat_result(chat, model="m", input_tokens=1, output_tokens=2)
    with tracing.git_span(("status",), str), tracing.http_span("GET", "http://h/x"):
        pass
    tracing.flush()
    assert tracing.tracer_provider() is None
    assert exporter.get_finished_spans() == ()


def test_off_no_helper_imports_opentelemetry() -> None:
    """In a fresh interpreter: every helper used with tracing off, and no OpenTelemetry module loaded
    (``tests/integration/test_tracing.py`` runs a whole job that way)."""
    code = textwrap.dedent(
        """
        import sys
        from helixcode import tracing
        from helixcode.config import TracingSettings

        assert not tracing.configure(TracingSettings())
        with tracing.submit_span("j", 1) as span, tracing.tool_span("t"), tracing.git_span(("log",), str):
            span.set_attribute("helix.job.id", "j")
            tracing.failed(span, "x")
        with tracing.chat_span(provider="p", kind="k", model="m"), tracing.http_span("GET", "http://h"):
            tracing.outcome("failed", "x")
        assert tracing.traceparent() is None and tracing.headers() == tracing.environment() == {}
        tracing.adopt_environment({"TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        tracing.flush()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_submit_spans_context_is_what_attempts_continue(exporter: InMemorySpanExporter) -> None:
    tracing.configure(TracingSettings(enabled=True), exporter=exporter)
    with tracing.submit_span("job", 1):
        stored = tracing.traceparent()
    assert stored is not None
    with tracing.attempt_span(claim(stored), "w1", (1_000, 2_000)):
        tracing.outcome("retried", "command exited with 3: token=hunter2")
    found = {s.name: s for s in exporter.get_finished_spans()}
    submit, claimed, attempt = found["job.submit"], found["task.claim"], found["task.attempt"]
    assert submit.context is not None
    flags = int(submit.context.trace_flags)
    assert stored == f"00-{submit.context.trace_id:032x}-{submit.context.span_id:016x}-{flags:02x}"
    for span in (claimed, attempt):
        assert span.parent is not None
        assert span.parent.span_id == submit.context.span_id
    assert (claimed.start_time, claimed.end_time) == (1_000, 2_000)
    assert dict(claimed.attributes or {})["helix.task.queue_wait_s"] == 2.5
    assert dict(attempt.attributes or {}) == {
        "helix.job.id": "j1",
        "helix.task.id": 7,
        "helix.task.key": "build",
        "helix.task.type": "building",
        "helix.attempt": 2,
        "helix.worker.id": "w1",
        "helix.task.outcome": "retried",
        "error.type": "retried",
    }
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.status.description == "command exited with 3: token=***"  # redacted like the logs


def test_a_job_not_sampled_at_submit_is_not_recorded_in_its_attempts(exporter: InMemorySpanExporter) -> None:
    """The sampling decision is made once, at submit, and travels in the traceparent's flags."""
    tracing.configure(TracingSettings(enabled=True, sample_ratio=0.0), exporter=exporter)
    with tracing.submit_span("job", 1):
        stored = tracing.traceparent()
    assert stored is not None
    assert int(stored[-2:], 16) & 1 == 0  # not sampled
    assert exporter.get_finished_spans() == ()
    worker = InMemorySpanExporter()  # a worker that samples every new trace
    tracing.configure(TracingSettings(enabled=True, sample_ratio=1.0), exporter=worker)
    with tracing.attempt_span(claim(stored), "w1"), tracing.tool_span("finish"):
        pass
    with tracing.attempt_span(claim(PARENT), "w1"):
        pass
    [recorded] = worker.get_finished_spans()
    assert recorded.context is not None
    assert f"{recorded.context.trace_id:032x}" == PARENT.split("-")[1]


def test_traceparent_of_the_environment_is_the_parent_of_new_traces(exporter: InMemorySpanExporter) -> None:
    tracing.configure(TracingSettings(enabled=True), exporter=exporter)
    tracing.adopt_environment({"TRACEPARENT": PARENT})
    assert tracing.environment() == {"TRACEPARENT": PARENT}  # passed on before any span starts
    with tracing.submit_span("job", 1):
        inner = tracing.traceparent()
    [submit] = exporter.get_finished_spans()
    assert submit.parent is not None
    assert f"{submit.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert inner is not None
    assert inner.split("-")[1] == PARENT.split("-")[1]


def test_span_attributes_follow_the_semantic_conventions(exporter: InMemorySpanExporter) -> None:
    tracing.configure(TracingSettings(enabled=True), exporter=exporter)
    with tracing.chat_span(
        provider="acct",
        kind="openai",
        model="gpt-4o-mini",
        base_url="https://api.example.com:8443/v1",
        max_tokens=64,
    ) as chat:
        tracing.chat_result(
            chat,
            model="gpt-4o-mini-2024",
            input_tokens=120,
            output_tokens=30,
            cached_tokens=100,
            finish_reason="stop",
        )
    with tracing.tool_span("run_command", "call_1") as tool:
        tracing.tool_result(tool, False, "'curl' is not allowed here")
    with tracing.git_span(
        ("-C", "/r", "push", "https://u:secret@h/r.git", "main"), lambda s: s.replace("secret", "***")
    ):
        pass
    with pytest.raises(ValueError, match="boom"), tracing.chat_span(provider="p", kind="ollama", model="m"):
        raise ValueError("boom")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert dict(spans["chat gpt-4o-mini"].attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 64,
        "helix.llm.provider": "acct",
        "helix.llm.streamed": False,
        "server.address": "api.example.com",
        "server.port": 8443,
        "gen_ai.response.model": "gpt-4o-mini-2024",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    tool = spans["execute_tool run_command"]
    assert dict(tool.attributes or {})["gen_ai.tool.call.id"] == "call_1"
    assert tool.status.status_code is StatusCode.ERROR
    assert dict(tool.attributes or {})["error.type"] == "tool_error"
    push = dict(spans["git push"].attributes or {})
    assert push["helix.git.command"] == "git -C /r push https://u:***@h/r.git main"
    failed = spans["chat m"]
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "ValueError"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("worktree", "add", "x"), "worktree"),
        (("-C", "/r", "-c", "a.b=c", "merge-tree", "--write-tree", "a", "b"), "merge-tree"),
        (("--git-dir", "/g", "--bare", "fetch"), "fetch"),
        (("--version",), "git"),
    ],
)
def test_git_subcommand(args: tuple[str, ...], expected: str) -> None:
    assert tracing.git_subcommand(args) == expected


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otlp.example.com/v1/traces", "https://otlp.example.com/v1/traces"),
    ],
)
def test_the_endpoint_is_the_collectors_base_url(given: str, url: str) -> None:
    assert tracing.traces_url(given) == url


def test_without_the_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"pip install 'helixcode\[otel\]'"):
        tracing.configure(TracingSettings(enabled=True))
    assert not tracing.active()
    assert not tracing.configure(TracingSettings(enabled=False))  # off needs nothing


def test_the_readmes_tracing_table_is_valid_config(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Traces")[1].split("```toml")[1].split("```")[0]
    (tmp_path / "helix.toml").write_text(block)
    settings = load_settings(tmp_path / "helix.toml").tracing
    assert settings.enabled
    assert tracing.traces_url(settings.endpoint or "") == "http://otel-collector:4318/v1/traces"


def test_an_embedders_own_provider_is_used_and_left_running(exporter: InMemorySpanExporter) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.configure(TracingSettings(enabled=True), provider=provider)
    with tracing.submit_span("job", 1):
        pass
    tracing.shutdown()
    with provider.get_tracer("theirs").start_as_current_span("still.exported"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["job.submit", "still.exported"]
    provider.shutdown()
