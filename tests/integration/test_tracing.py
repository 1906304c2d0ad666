"""Traces, end to end, on both databases: one trace per job, from the API request to every attempt.

A client sends ``POST /api/v1/jobs`` with its own ``traceparent``; the job has a shell task and, after
it, an agent task driven by the scripted model (in the sandbox, on a real git repository). A worker
runs both in process. The spans are read from the SDK's in-memory exporter, installed with
``tracing.configure(settings, exporter=...)``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from helixcode import tracing
from helixcode.agent.services import AgentServices, close_services, install
from helixcode.api.app import create_app
from helixcode.api.client import RemoteManager
from helixcode.config import LLMSettings, ProviderSettings, Settings, TracingSettings, WorkersSettings
from helixcode.domain.enums import JobStatus
from helixcode.engine.manager import TaskManager
from helixcode.llm.registry import build_manager
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.helpers import spec
from tests.integration.agent.conftest import git
from tests.scripted_model import ScriptedModel

ROOT = Path(__file__).resolve().parents[2]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every span kept in memory."""
    exporter = InMemorySpanExporter()
    assert tracing.configure(TracingSettings(enabled=True), exporter=exporter)
    yield exporter
    tracing.shutdown()


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel().start()
    yield server
    server.stop()


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# traced\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def with_model(settings: Settings, model: ScriptedModel) -> Settings:
    provider = ProviderSettings(
        type="openai",
        base_url=f"{model.url}/v1",
        models=["scripted"],
        capabilities=["tools", "json_schema"],
        context_length=32_000,
    )
    return Settings(
        database=settings.database,
        tasks=settings.tasks,
        workers=WorkersSettings(poll_interval=0.1, drain_timeout=0.0),
        llm=LLMSettings(embedded=False, health_interval=3600),
        providers={"scripted": provider},
    )


@pytest.fixture
async def agent_settings(settings: Settings, model: ScriptedModel) -> AsyncIterator[Settings]:
    """Settings whose only model is the scripted one, and the agent services of this "worker process"."""
    chosen = with_model(settings, model)
    store = await Store.open(chosen)
    manager = build_manager(chosen)
    install(chosen.database.url, AgentServices(chosen, store, manager, owned=False))
    yield chosen
    await close_services()
    await manager.aclose()
    await store.aclose()


async def operator_token(settings: Settings) -> str:
    store = await Store.open(settings)
    try:
        _, token = await store.create_token("tracing", "operator")  # type: ignore[arg-type]
    finally:
        await store.aclose()
    return token


async def submit_through_the_api(settings: Settings, plan: dict[str, Any], workdir: Path) -> str:
    """``POST /api/v1/jobs`` with a client's ``traceparent``; the job's id."""
    token = await operator_token(settings)
    app = create_app(settings, workdir=workdir)  # after configure: its request spans are ours
    headers = {"Authorization": f"Bearer {token}", "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        response = await client.post("/api/v1/jobs", json={"plan": plan}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def run_worker(settings: Settings) -> None:
    store = await Store.open(settings)
    options = WorkerOptions(
        concurrency=1, capabilities=["git", "llm"], exit_when_idle=True, detect=False, sample_gpu=False
    )
    try:
        async with asyncio.timeout(60):
            await Worker(store, settings, options).run()
    finally:
        await store.aclose()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def parent_of(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def under(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[str, ReadableSpan]) -> bool:
    """Whether ``ancestor`` is ``span``'s parent, or its parent's, and so on."""
    parent = parent_of(span)
    while parent is not None:
        if parent == hex_ids(ancestor)[1]:
            return True
        found = by_id.get(parent)
        parent = parent_of(found) if found is not None else None
    return False


@pytest.mark.slow
@pytest.mark.usefixtures("sandbox")
async def test_one_trace_per_job_from_the_api_request_to_every_attempt(
    spans: InMemorySpanExporter, agent_settings: Settings, model: ScriptedModel, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    model.script("TRACED", [("write_file", {"path": "a.txt", "content": "a\n"})])
    plan = {
        "name": "traced",
        "workdir": str(repo),
        "tasks": [
            {"id": "build", "type": "building", "title": "build", "run": {"shell": 'echo "$TRACEPARENT"'}},
            {"id": "code", "type": "building", "title": "TRACED"},
        ],
    }
    job_id = await submit_through_the_api(agent_settings, plan, tmp_path)
    await run_worker(agent_settings)

    store = await Store.open(agent_settings)
    try:
        assert (await store.get_job(job_id)).status is JobStatus.SUCCEEDED
        shell_output = (await store.task_outputs(job_id))["build"]
    finally:
        await store.aclose()

    finished = list(spans.get_finished_spans())
    by_id = {hex_ids(s)[1]: s for s in finished}
    assert {hex_ids(s)[0] for s in finished} == {CLIENT_TRACE}, "one trace: the client's"

    [request] = [s for s in finished if s.kind is SpanKind.SERVER]
    assert request.name == "POST /api/v1/jobs"
    assert parent_of(request) == CLIENT_SPAN  # the client's span is the root's parent
    assert dict(request.attributes or {})["http.response.status_code"] == 201

    [submit] = [s for s in finished if s.name == "job.submit"]
    assert parent_of(submit) == hex_ids(request)[1]
    assert dict(submit.attributes or {}) == {
        "helix.job.name": "traced",
        "helix.job.tasks": 2,
        "helix.job.id": job_id,
    }

    attempts = {
        s.attributes["helix.task.key"]: s for s in finished if s.name == "task.attempt" and s.attributes
    }
    assert set(attempts) == {"build", "code"}
    claims = [s for s in finished if s.name == "task.claim"]
    assert len(claims) == 2
    for span in [*attempts.values(), *claims]:
        assert parent_of(span) == hex_ids(submit)[1], span.name  # the submit span's children
    for key, attempt in attempts.items():
        attrs = dict(attempt.attributes or {})
        assert attrs["helix.job.id"] == job_id
        assert attrs["helix.task.type"] == "building"
        assert attrs["helix.attempt"] == 1
        assert attrs["helix.worker.id"]
        assert attrs["helix.task.outcome"] == "succeeded", key
        assert attempt.status.status_code is not StatusCode.ERROR
    # The shell task saw its attempt's span as TRACEPARENT, for programs that continue the trace.
    assert shell_output["stdout"].strip() == f"00-{CLIENT_TRACE}-{hex_ids(attempts['build'])[1]}-01"

    code = attempts["code"]
    chats = [s for s in finished if s.name == "chat scripted"]
    assert len(chats) == len([r for r in model.requests if r.get("messages")]) >= 2
    for chat in chats:
        assert parent_of(chat) == hex_ids(code)[1]
        assert chat.kind is SpanKind.CLIENT
        attrs = dict(chat.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "openai"
        assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "scripted"
        assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (10, 10)
        assert attrs["server.address"] == "127.0.0.1"
    tools = {s.attributes["gen_ai.tool.name"]: s for s in finished if s.name.startswith("execute_tool ")}
    assert set(tools) == {"write_file", "finish"}
    for name, tool in tools.items():
        assert tool.name == f"execute_tool {name}"
        assert parent_of(tool) == hex_ids(code)[1]
    gits = [s for s in finished if s.name.startswith("git ")]
    assert {"git worktree", "git commit"} <= {s.name for s in gits}
    assert all(under(s, code, by_id) for s in gits)  # only the agent task uses git
    assert all(s.attributes and s.attributes["process.exit.code"] is not None for s in gits)


async def test_an_attempt_of_a_job_submitted_without_tracing_starts_its_own_trace(settings: Settings) -> None:
    store = await Store.open(settings)
    try:
        job = await TaskManager(store).submit(spec({"id": "a", "run": {"builtin": "noop"}}), workdir=None)
    finally:
        await store.aclose()
    exporter = InMemorySpanExporter()
    tracing.configure(TracingSettings(enabled=True), exporter=exporter)  # only the worker traces
    try:
        await run_worker(Settings(database=settings.database, workers=WorkersSettings(poll_interval=0.1)))
    finally:
        tracing.shutdown()
    [attempt] = [s for s in exporter.get_finished_spans() if s.name == "task.attempt"]
    assert attempt.parent is None  # a trace of its own, not a child of whatever was current
    assert dict(attempt.attributes or {})["helix.job.id"] == job.id
    assert dict(attempt.attributes or {})["helix.task.outcome"] == "succeeded"


async def test_a_client_of_the_api_carries_its_trace_to_the_server(
    spans: InMemorySpanExporter, settings: Settings, tmp_path: Path
) -> None:
    """``helix --server URL submit``: the CLI's request span is the parent of the server's."""
    token = await operator_token(settings)
    app = create_app(settings, workdir=tmp_path)
    async with (
        app.router.lifespan_context(app),
        RemoteManager("http://api", token, transport=httpx.ASGITransport(app=app)) as remote,
    ):
        job = await remote.submit(spec({"id": "a", "run": {"builtin": "noop"}}), workdir=None)
    found = {s.name: s for s in spans.get_finished_spans()}
    client, server, submit = found["POST"], found["POST /api/v1/jobs"], found["job.submit"]
    assert client.kind is SpanKind.CLIENT
    assert client.parent is None
    assert dict(client.attributes or {})["url.full"] == "http://api/api/v1/jobs"
    assert dict(client.attributes or {})["http.response.status_code"] == 201
    assert parent_of(server) == hex_ids(client)[1]
    assert parent_of(submit) == hex_ids(server)[1]
    assert dict(submit.attributes or {})["helix.job.id"] == job.id
    store = await Store.open(settings)
    try:  # the job's stored context is the submit span's
        stored = (await store.claim("w", (), 1))[0].trace_context
    finally:
        await store.aclose()
    assert stored is not None
    assert stored.split("-")[1:3] == list(hex_ids(submit))


@pytest.mark.slow
def test_off_a_job_runs_without_loading_opentelemetrys_sdk(tmp_path: Path) -> None:
    """A whole job (submitted, claimed, run by a worker) in a fresh interpreter: no module of the SDK
    or the exporter is imported, and ``helixcode.tracing`` imports no OpenTelemetry module at all."""
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        import helixcode.tracing
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "tracing imported it"
        from helixcode.config import DatabaseSettings, Settings, WorkersSettings
        from helixcode.domain.plan import parse_plan
        from helixcode.engine.manager import TaskManager
        from helixcode.store.store import Store
        from helixcode.worker.runtime import Worker, WorkerOptions

        async def main():
            settings = Settings(
                database=DatabaseSettings(url="sqlite+aiosqlite:///{tmp_path / "t.db"}"),
                workers=WorkersSettings(poll_interval=0.05),
            )
            store = await Store.open(settings)
            plan = {{"name": "j", "tasks": [{{"id": "a", "type": "building", "title": "a",
                     "run": {{"shell": "echo hi"}}}}]}}
            job = await TaskManager(store).submit(parse_plan(plan), workdir="{tmp_path}")
            options = WorkerOptions(exit_when_idle=True, detect=False, sample_gpu=False)
            stats = await Worker(store, settings, options).run()
            assert stats.succeeded == 1, stats
            await store.aclose()

        asyncio.run(main())
        loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
        assert not loaded, loaded
        print("ok")
        """
    )
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
