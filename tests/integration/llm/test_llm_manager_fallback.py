"""Fallback, retries, cool-downs and circuit breakers with real servers on loopback, one of them stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from llm_replay import ReplayServer, json_reply, transcript
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from helixcode import tracing
from helixcode.config import TracingSettings
from helixcode.llm import (
    ChatRequest,
    LLMManager,
    ManagedStream,
    Message,
    ModelCapabilities,
    ProviderEntry,
    StreamInterrupted,
)
from helixcode.llm.errors import NoCandidate
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.policy import RetryPolicy
from helixcode.llm.types import TextDelta

HI = ChatRequest([Message.user("hi")], max_tokens=16)
ERROR_500 = {"error": {"message": "internal error", "type": "server_error"}}


def completion(text: str, model: str = "m") -> dict[str, object]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def serve(server: ReplayServer, model: str = "m") -> ReplayServer:
    server.add(
        "GET", "/v1/models", json_reply({"object": "list", "data": [{"id": model, "object": "model"}]})
    )
    return server


async def drain(stream: ManagedStream) -> None:
    async with stream:
        async for _ in stream:
            pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def entry(server: ReplayServer, name: str, priority: int, ctx: int | None = 4096) -> ProviderEntry:
    caps = ModelCapabilities(tools=True, json_schema=True, context_length=ctx)
    return ProviderEntry(
        OpenAICompatProvider(name, f"{server.url}/v1", models=["m"], capabilities=caps), priority
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def manager(
    replay: ReplayServer, replay2: ReplayServer, sleeps: Sleeps, clock: Clock
) -> AsyncIterator[LLMManager]:
    serve(replay)
    serve(replay2)
    entries = {"primary": entry(replay, "primary", 1), "backup": entry(replay2, "backup", 2)}
    async with LLMManager(
        entries, breaker_threshold=2, breaker_cooldown=30, sleep=sleeps, clock=clock
    ) as llm:
        yield llm


async def test_killed_primary_falls_back_without_sleeping(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer, sleeps: Sleeps
) -> None:
    replay.add("POST", "/v1/chat/completions", json_reply(completion("from primary")))
    replay2.add("POST", "/v1/chat/completions", json_reply(completion("from backup")))
    assert (await manager.chat(HI)).provider == "primary"
    replay.stop()
    reply = await manager.chat(HI)
    assert (reply.provider, reply.content) == ("backup", "from backup")
    assert sleeps == []  # a refused connection moves on at once
    failed = manager.records[-2]
    assert (failed.provider, failed.ok) == ("primary", False)
    assert "ConnectionRefused" in (failed.error or "")
    assert manager.records[-1].usage is not None
    assert manager.records[-1].usage.total_tokens == 4


async def test_breaker_opens_then_half_opens_after_cooldown(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer, clock: Clock
) -> None:
    replay.add("POST", "/v1/chat/completions", json_reply(ERROR_500, 500))
    replay2.add("POST", "/v1/chat/completions", json_reply(completion("backup")))
    assert (await manager.chat(HI)).provider == "backup"  # two failed tries on primary: breaker opens
    assert manager.breakers["primary"].state == "open"
    primary_calls = len(replay.bodies("/v1/chat/completions"))
    assert (await manager.chat(HI)).provider == "backup"
    assert len(replay.bodies("/v1/chat/completions")) == primary_calls  # skipped while open
    clock.now += 31
    assert manager.breakers["primary"].state == "half_open"
    replay.routes[("POST", "/v1/chat/completions")].clear()
    replay.add("POST", "/v1/chat/completions", json_reply(completion("primary is back")))
    assert (await manager.chat(HI)).content == "primary is back"
    assert manager.breakers["primary"].state == "closed"


async def test_short_503_is_retried_on_the_same_candidate(
    manager: LLMManager, replay: ReplayServer, sleeps: Sleeps
) -> None:
    busy = json_reply({"error": {"message": "busy", "type": "server_error"}}, 503, {"Retry-After": "0"})
    replay.add("POST", "/v1/chat/completions", busy, json_reply(completion("second try")))
    reply = await manager.chat(HI)
    assert (reply.provider, reply.content) == ("primary", "second try")
    assert len(sleeps) == 1
    assert sleeps[0] <= manager.policy.max_wait


async def test_429_cools_the_model_down_for_retry_after(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer, sleeps: Sleeps, clock: Clock
) -> None:
    limited = json_reply({"error": {"message": "Rate limit", "type": "requests"}}, 429, {"Retry-After": "20"})
    replay.add("POST", "/v1/chat/completions", limited, json_reply(completion("primary again")))
    replay2.add("POST", "/v1/chat/completions", json_reply(completion("backup")))
    assert (await manager.chat(HI)).provider == "backup"
    assert sleeps == []  # 20 s is too long to wait: next candidate instead
    assert manager.cooldowns.remaining("primary", "m") == pytest.approx(20)
    assert manager.breakers["primary"].state == "closed"  # a 429 is not a broken provider
    assert (await manager.chat(HI)).provider == "backup"
    clock.now += 21
    assert (await manager.chat(HI)).content == "primary again"


async def test_stream_falls_back_before_first_event(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.stop()
    replay2.add("POST", "/v1/chat/completions", transcript("openai_text_usage.sse"))
    async with manager.stream(HI) as stream:
        texts = [e.text async for e in stream if isinstance(e, TextDelta)]
    assert texts == ["Hello", " there"]
    assert stream.response is not None
    assert stream.response.provider == "backup"


async def test_stream_failing_after_content_raises_interrupted(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_dropped.sse", drop=True))
    with pytest.raises(StreamInterrupted) as info:
        await drain(manager.stream(HI))
    assert info.value.partial.content == "Partial answ"
    assert info.value.partial.provider == "primary"
    assert replay2.bodies("/v1/chat/completions") == []  # no silent restart elsewhere


async def test_context_overflow_moves_to_a_larger_window(replay: ReplayServer, replay2: ReplayServer) -> None:
    third = serve(ReplayServer().start())
    try:
        overflow = {
            "error": {
                "message": "This model's maximum context length is 512 tokens. However, you requested "
                "900 tokens (890 in the messages, 10 in the completion).",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        }
        serve(replay).add("POST", "/v1/chat/completions", json_reply(overflow, 400))
        serve(replay2)
        third.add("POST", "/v1/chat/completions", json_reply(completion("big window")))
        entries = {
            "small": entry(replay, "small", 1, ctx=512),
            "also-small": entry(replay2, "also-small", 2, ctx=600),
            "large": entry(third, "large", 3, ctx=32768),
        }
        async with LLMManager(entries) as llm:
            reply = await llm.chat(HI)
        assert (reply.provider, reply.content) == ("large", "big window")
        assert replay2.bodies("/v1/chat/completions") == []
    finally:
        third.stop()


async def test_health_monitor_excludes_a_dead_provider(manager: LLMManager, replay: ReplayServer) -> None:
    replay.stop()
    status = await manager.monitor.probe_all()
    assert not status["primary"].ok
    assert status["backup"].ok
    assert [c.provider for c in await manager.candidates(HI)] == ["backup"]


async def test_no_candidate_names_every_attempt(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.stop()
    replay2.stop()
    with pytest.raises(NoCandidate) as info:
        await manager.chat(HI)
    assert [who for who, _ in info.value.attempts] == ["primary/m", "backup/m"]


async def test_retry_policy_is_configurable(replay: ReplayServer) -> None:
    serve(replay).add("POST", "/v1/chat/completions", json_reply(ERROR_500, 500))
    sleeps = Sleeps()
    entries = {"only": entry(replay, "only", 1)}
    async with LLMManager(
        entries, policy=RetryPolicy(attempts_per_candidate=3, max_wait=5), sleep=sleeps
    ) as llm:
        with pytest.raises(NoCandidate):
            await llm.chat(HI)
    assert len(replay.bodies("/v1/chat/completions")) == 3
    assert len(sleeps) == 2


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(TracingSettings(enabled=True), exporter=exporter)
    yield exporter
    tracing.shutdown()


async def test_traced_every_request_to_a_provider_is_a_span_of_its_own(
    manager: LLMManager, replay: ReplayServer, replay2: ReplayServer, spans: InMemorySpanExporter
) -> None:
    """A fallback shows as a failed ``chat m`` span on the primary, then one on the backup with the
    reply's usage; a stream's the same, marked streamed."""
    replay.stop()
    replay2.add("POST", "/v1/chat/completions", json_reply(completion("from backup")))
    replay2.add("POST", "/v1/chat/completions", transcript("openai_text_usage.sse"))
    await manager.chat(HI)
    await drain(manager.stream(HI))
    found = [dict(s.attributes or {}) | {"status": s.status.status_code} for s in spans.get_finished_spans()]
    assert [(f["helix.llm.provider"], f["helix.llm.streamed"], f["status"]) for f in found] == [
        ("primary", False, StatusCode.ERROR),
        ("backup", False, StatusCode.UNSET),
        ("primary", True, StatusCode.ERROR),
        ("backup", True, StatusCode.UNSET),
    ]
    assert {f["gen_ai.request.model"] for f in found} == {"m"}
    assert found[0]["error.type"] == found[2]["error.type"] == "ConnectionRefused"
    assert (found[1]["gen_ai.usage.input_tokens"], found[1]["gen_ai.usage.output_tokens"]) == (3, 1)
    assert found[3]["gen_ai.usage.output_tokens"] > 0
    assert found[3]["gen_ai.response.finish_reasons"] == ("stop",)
