"""Faults that stall a fleet's workers in the LLM layer, each reproduced against loopback servers.

- a half-open breaker whose trial ends in a 429, another 4xx or a cancellation must not stay wedged;
- a 429 with a short ``Retry-After`` and no other candidate waits instead of failing at once;
- the embedded provider's own timeout is a typed, retryable ``ProviderTimeout``;
- a provider's stream cut after content raises ``StreamInterrupted`` with the partial text, and an HTML
  answer names its content type and shows its start;
- a worker's agent services start the health monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from llm_replay import ReplayServer, Reply, json_reply, transcript

from helixcode.llm import ChatRequest, LLMManager, Message, ModelCapabilities, ProviderEntry
from helixcode.llm.base import ChatStream
from helixcode.llm.errors import (
    ConnectionDropped,
    LLMError,
    NoCandidate,
    ProviderTimeout,
    ServerError,
    StreamInterrupted,
)
from helixcode.llm.local import LocalProvider
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.types import Deadlines

HI = ChatRequest([Message.user("hi")], max_tokens=16)
ERROR_500 = {"error": {"message": "internal error", "type": "server_error"}}
CAPS = ModelCapabilities(tools=True, json_schema=True, context_length=4096)


def completion(text: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


async def drain(stream: ChatStream) -> None:
    async with stream:
        async for _ in stream:
            pass


def rate_limited(seconds: str) -> Reply:
    return json_reply({"error": {"message": "Rate limit", "type": "requests"}}, 429, {"Retry-After": seconds})


@pytest.fixture
async def single(replay: ReplayServer) -> AsyncIterator[LLMManager]:
    """One provider, nothing to fall back to: a breaker that opens at the first failure, a short cooldown."""
    replay.add("GET", "/v1/models", json_reply({"object": "list", "data": [{"id": "m", "object": "model"}]}))
    provider = OpenAICompatProvider("only", f"{replay.url}/v1", models=["m"], capabilities=CAPS)
    async with LLMManager(
        {"only": ProviderEntry(provider, 1)}, breaker_threshold=1, breaker_cooldown=0.2
    ) as llm:
        yield llm


@pytest.mark.parametrize(
    "trial",
    [
        rate_limited("0"),
        json_reply({"error": {"message": "bad", "type": "invalid_request_error"}}, 400),
    ],
    ids=["429", "400"],
)
async def test_a_half_open_trial_that_ends_without_a_verdict_releases_the_breaker(
    single: LLMManager, replay: ReplayServer, trial: Reply
) -> None:
    replay.add("POST", "/v1/chat/completions", json_reply(ERROR_500, 500))
    with pytest.raises(NoCandidate):
        await single.chat(HI)
    assert single.breakers["only"].state == "open"
    await asyncio.sleep(0.25)
    assert single.breakers["only"].state == "half_open"
    replay.routes[("POST", "/v1/chat/completions")].clear()
    replay.add("POST", "/v1/chat/completions", trial, json_reply(completion("back")))
    with contextlib.suppress(LLMError):  # the trial fails (400), or waits out its 429 and succeeds
        await single.chat(HI)
    assert single.breakers["only"].allows(), "the breaker stayed wedged half-open"
    assert (await single.chat(HI)).content == "back"
    assert single.breakers["only"].state == "closed"


async def test_a_cancelled_trial_releases_the_breaker(single: LLMManager, replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", json_reply(ERROR_500, 500))
    with pytest.raises(NoCandidate):
        await single.chat(HI)
    await asyncio.sleep(0.25)
    body = json.dumps(completion("slow")).encode()
    slow = Reply(200, {"Content-Type": "application/json"}, chunks=[body], delay=2.0)
    replay.routes[("POST", "/v1/chat/completions")].clear()
    replay.add("POST", "/v1/chat/completions", slow, json_reply(completion("back")))
    call = asyncio.create_task(single.chat(HI))
    await asyncio.sleep(0.3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert single.breakers["only"].allows()


async def test_a_short_retry_after_is_waited_for_when_nothing_else_can_serve(
    single: LLMManager, replay: ReplayServer
) -> None:
    replay.add("POST", "/v1/chat/completions", rate_limited("1"), json_reply(completion("after the wait")))
    started = time.monotonic()
    reply = await single.chat(HI)
    assert reply.content == "after the wait"
    assert time.monotonic() - started >= 0.9  # the second the provider asked for
    assert len(replay.bodies("/v1/chat/completions")) == 2


async def test_a_retry_after_longer_than_the_cap_still_fails_at_once(
    single: LLMManager, replay: ReplayServer
) -> None:
    single.max_rate_wait = 5.0
    replay.add("POST", "/v1/chat/completions", rate_limited("120"))
    started = time.monotonic()
    with pytest.raises(NoCandidate):
        await single.chat(HI)
    assert time.monotonic() - started < 2.0


async def test_the_embedded_providers_timeout_is_a_provider_timeout() -> None:
    provider = LocalProvider("embedded", deadlines=Deadlines(total=0.2))
    provider._check_model = lambda request: None  # type: ignore[method-assign]
    provider._run = lambda kwargs: time.sleep(1.0)  # type: ignore[method-assign]  # a model stuck decoding
    provider._kwargs = lambda request: {}  # type: ignore[method-assign]
    with pytest.raises(ProviderTimeout):
        await provider.chat(HI)


async def test_agent_services_start_the_health_monitor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helixcode.agent.services import close_services, services_for

    config = tmp_path / "helix.toml"
    config.write_text("[llm]\nembedded = false\nhealth_interval = 0.1\n")
    monkeypatch.setenv("HELIX_CONFIG", str(config))
    url = f"sqlite+aiosqlite:///{tmp_path / 'helix.db'}"
    from helixcode.config import DatabaseSettings, Settings
    from helixcode.store.store import Store

    async with await Store.open(Settings(database=DatabaseSettings(url=url))):
        pass  # creates and migrates the database
    try:
        services = await services_for(url)
        task = services.llm.monitor._task
        assert task is not None
        assert not task.done()
    finally:
        await close_services()


async def test_a_providers_stream_cut_after_content_says_so_with_the_partial_text(
    replay: ReplayServer,
) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_dropped.sse", drop=True))
    async with OpenAICompatProvider("oa", f"{replay.url}/v1", models=["m"], capabilities=CAPS) as provider:
        with pytest.raises(StreamInterrupted) as info:
            await drain(provider.stream(HI))
    assert info.value.partial.content == "Partial answ"
    assert isinstance(info.value.__cause__, ConnectionDropped)


async def test_an_html_answer_names_its_content_type_and_shows_the_start(replay: ReplayServer) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    replay.add("POST", "/v1/chat/completions", Reply(200, {"Content-Type": "text/html"}, page))
    async with OpenAICompatProvider("oa", f"{replay.url}/v1", models=["m"], capabilities=CAPS) as provider:
        with pytest.raises(ServerError) as info:
            await provider.chat(HI)
    assert "text/html" in str(info.value)
    assert "502 Bad Gateway" in str(info.value)
