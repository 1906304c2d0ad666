"""The OpenAI-compatible provider against recorded SSE transcripts served over real HTTP."""

from __future__ import annotations

import pytest
from llm_replay import ReplayServer, json_reply, transcript

from helixcode.llm import ChatRequest, Deadlines, Message, Tool, collect
from helixcode.llm.errors import ConnectionDropped, ConnectionRefused, ProviderTimeout, RateLimited
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.types import Done, TextDelta, ToolCallDelta, ToolCallDone, UsageEvent

WEATHER = Tool(
    "get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)
REQUEST = ChatRequest([Message.user("Weather in Paris and Berlin?")], tools=[WEATHER], max_tokens=64)


def provider(server: ReplayServer, **kw: object) -> OpenAICompatProvider:
    return OpenAICompatProvider("oa", f"{server.url}/v1", api_key="sk-test", models=["gpt-4o-mini"], **kw)  # type: ignore[arg-type]


async def test_text_stream_with_usage(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_text_usage.sse"))
    async with provider(replay) as p, p.stream(ChatRequest([Message.user("hi")])) as stream:
        events = [e async for e in stream]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there"]
    assert any(isinstance(e, UsageEvent) and e.usage.total_tokens == 11 for e in events)
    assert events[-1] == Done("stop", "gpt-4o-mini")
    sent = replay.bodies("/v1/chat/completions")[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert replay.requests[0][3]["Authorization"] == "Bearer sk-test"


async def test_repeated_ids_and_names_are_not_concatenated(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_repeated_names.sse"))
    async with provider(replay) as p:
        reply = await collect(p.stream(REQUEST))
    [call] = reply.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_x1", "get_weather", {"city": "Paris"})
    assert reply.finish_reason == "tool_calls"


async def test_parallel_calls_at_index_zero_are_split_by_id(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_index_collision.sse"))
    async with provider(replay) as p, p.stream(REQUEST) as stream:
        events = [e async for e in stream]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [d.index for d in deltas] == [0, 1]
    done = [e.call for e in events if isinstance(e, ToolCallDone)]
    assert [(c.id, c.arguments["city"]) for c in done] == [("call_a1b2", "Paris"), ("call_c3d4", "Berlin")]
    assert stream.usage is not None
    assert stream.usage.prompt_tokens == 88


async def test_call_cut_by_max_tokens_reports_invalid_arguments(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_cut_by_length.sse"))
    async with provider(replay) as p:
        reply = await collect(p.stream(REQUEST))
    [call] = reply.tool_calls
    assert call.error is not None
    assert call.arguments == {}
    assert call.raw_arguments == '{"path": "a.py", "con'


async def test_429_with_retry_after(replay: ReplayServer) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    replay.add("POST", "/v1/chat/completions", json_reply(body, 429, {"Retry-After": "7"}))
    async with provider(replay) as p:
        with pytest.raises(RateLimited) as info:
            await collect(p.stream(REQUEST))
    assert info.value.retry_after == 7.0
    assert info.value.status == 429


async def test_connection_dropped_mid_stream(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_dropped.sse", drop=True))
    async with provider(replay) as p:
        stream = p.stream(REQUEST)
        with pytest.raises(ConnectionDropped) as info:
            await collect(stream)
    assert stream.events == 2
    assert info.value.__cause__ is not None
    assert stream.response.content == "Partial answ"


async def test_idle_gap_deadline(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_text_usage.sse", delay=0.4))
    deadlines = Deadlines(total=10, first_token=5, idle=0.1)
    async with provider(replay) as p:
        with pytest.raises(ProviderTimeout, match=r"no first token|no event"):
            await collect(p.stream(ChatRequest([Message.user("hi")], deadlines=deadlines)))


async def test_non_streamed_chat(replay: ReplayServer) -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
    replay.add("POST", "/v1/chat/completions", json_reply(completion))
    async with provider(replay) as p:
        reply = await p.chat(REQUEST)
    assert reply.tool_calls[0].arguments == {"city": "Oslo"}
    assert reply.usage is not None
    assert replay.bodies("/v1/chat/completions")[0]["tools"][0]["function"]["name"] == "get_weather"


async def test_server_without_stream_options_is_asked_again(replay: ReplayServer) -> None:
    bad = {
        "error": {
            "message": "Unrecognized request argument supplied: stream_options",
            "type": "invalid_request_error",
        }
    }
    replay.add("POST", "/v1/chat/completions", json_reply(bad, 400), transcript("openai_text_usage.sse"))
    async with provider(replay) as p:
        reply = await collect(p.stream(ChatRequest([Message.user("hi")])))
        assert p.stream_usage is False
    assert reply.content == "Hello there"
    assert "stream_options" not in replay.bodies("/v1/chat/completions")[1]


async def test_health_and_models(replay: ReplayServer) -> None:
    replay.add(
        "GET",
        "/v1/models",
        json_reply({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}),
    )
    async with provider(replay) as p:
        assert (await p.health()).ok
        [model] = await p.list_models()
    assert model.name == "gpt-4o-mini"
    assert model.capabilities.tools


async def test_refused_connection_is_mapped(replay: ReplayServer) -> None:
    url = replay.url
    replay.stop()
    async with OpenAICompatProvider("oa", f"{url}/v1", models=["m"]) as p:
        assert not (await p.health()).ok
        with pytest.raises(ConnectionRefused):
            await p.chat(REQUEST)
