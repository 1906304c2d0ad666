"""The Anthropic provider against recorded Messages API event streams served over real HTTP."""

from __future__ import annotations

import pytest
from llm_replay import ReplayServer, json_reply, transcript

from helixcode.llm import ChatRequest, Message, Tool, collect
from helixcode.llm.anthropic import AnthropicProvider
from helixcode.llm.errors import AuthError, ContextLengthExceeded, Overloaded
from helixcode.llm.types import ToolCallDelta

WEATHER = Tool("get_weather", "Weather", {"type": "object", "properties": {"location": {"type": "string"}}})


def provider(server: ReplayServer) -> AnthropicProvider:
    return AnthropicProvider("an", server.url, api_key="sk-ant-test", models=["claude-sonnet-4-5"])


async def test_text_and_tool_use_stream(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/messages", transcript("anthropic_tool_use.sse"))
    request = ChatRequest(
        [Message.system("Be terse."), Message.user("Weather in SF?")], tools=[WEATHER], tool_choice="required"
    )
    async with provider(replay) as p, p.stream(request) as stream:
        events = [e async for e in stream]
    reply = stream.response
    assert reply.content == "Okay, let me check the weather."
    [call] = reply.tool_calls
    assert call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert call.arguments == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert sum(isinstance(e, ToolCallDelta) for e in events) == 5
    assert reply.finish_reason == "tool_calls"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (472, 89)
    _method, _path, body, headers = replay.requests[0]
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["input_schema"]["properties"]["location"] == {"type": "string"}


async def test_overloaded_error_event_after_200(replay: ReplayServer) -> None:
    replay.add("POST", "/v1/messages", transcript("anthropic_overloaded.sse"))
    async with provider(replay) as p:
        with pytest.raises(Overloaded):
            await collect(p.stream(ChatRequest([Message.user("hi")])))


async def test_529_and_auth_and_prompt_too_long(replay: ReplayServer) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    auth = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    too_long = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 210000 tokens > 200000 maximum",
        },
    }
    replay.add(
        "POST", "/v1/messages", json_reply(overloaded, 529), json_reply(auth, 401), json_reply(too_long, 400)
    )
    async with provider(replay) as p:
        with pytest.raises(Overloaded):
            await p.chat(ChatRequest([Message.user("hi")]))
        with pytest.raises(AuthError):
            await p.chat(ChatRequest([Message.user("hi")]))
        with pytest.raises(ContextLengthExceeded) as info:
            await p.chat(ChatRequest([Message.user("hi")]))
    assert (info.value.n_prompt, info.value.n_ctx) == (210000, 200000)


async def test_models_probe(replay: ReplayServer) -> None:
    models = {
        "data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5"}],
        "has_more": False,
    }
    replay.add("GET", "/v1/models", json_reply(models))
    async with provider(replay) as p:
        assert (await p.health()).ok
        [m] = await p.list_models()
    assert m.capabilities.tools
    assert m.capabilities.context_length == 200_000
