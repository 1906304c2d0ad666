"""The llama.cpp provider against a real llama-cpp-python server running SmolLM2-135M (session fixture)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
from llm_replay import LLAMA_N_CTX

from helixcode.llm import ChatRequest, Message, NamedTool, ResponseSchema, Tool, collect
from helixcode.llm.errors import ContextLengthExceeded, ModelNotFound
from helixcode.llm.llamacpp import LlamaCppProvider
from helixcode.llm.types import Done, TextDelta, ToolCall, ToolCallDelta, ToolCallDone

pytestmark = pytest.mark.llm

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
async def llama(llama_server: str) -> AsyncIterator[LlamaCppProvider]:
    async with LlamaCppProvider("llama", llama_server, capabilities=None) as provider:
        yield provider


async def test_health_and_models_degrade_to_v1(llama: LlamaCppProvider) -> None:
    status = await llama.health()
    assert status.ok
    assert llama.flavour == "llama-cpp-python"
    [model] = await llama.list_models()
    assert model.name.endswith(".gguf")
    assert model.capabilities.tools


async def test_chat(llama: LlamaCppProvider) -> None:
    reply = await llama.chat(ChatRequest([Message.user("Say hello.")], max_tokens=8, temperature=0))
    assert reply.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 8


async def test_stream(llama: LlamaCppProvider) -> None:
    async with llama.stream(
        ChatRequest([Message.user("Count to three.")], max_tokens=8, temperature=0)
    ) as stream:
        events = [e async for e in stream]
    assert any(isinstance(e, TextDelta) for e in events)
    assert isinstance(events[-1], Done)
    assert stream.response.content
    assert stream.first_event_s is not None


async def test_forced_named_tool_call_accumulates_into_json(llama: LlamaCppProvider) -> None:
    request = ChatRequest(
        [Message.user("What is the weather in Paris?")],
        tools=[WEATHER],
        tool_choice=NamedTool("get_weather"),
        max_tokens=48,
        temperature=0,
    )
    async with llama.stream(request) as stream:
        events = [e async for e in stream]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > 1  # the arguments really came in pieces
    [done] = [e for e in events if isinstance(e, ToolCallDone)]
    assert done.call.name == "get_weather"
    assert done.call.error is None
    assert isinstance(done.call.arguments.get("city"), str)


async def test_required_tool_choice_is_degraded_not_500(llama: LlamaCppProvider) -> None:
    request = ChatRequest(
        [Message.user("Weather in Oslo?")], tools=[WEATHER], tool_choice="required", max_tokens=48
    )
    reply = await llama.chat(request)
    assert reply.tool_calls
    assert reply.tool_calls[0].name == "get_weather"


async def test_json_schema_output(llama: LlamaCppProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    request = ChatRequest(
        [Message.user("Invent a person.")],
        response_schema=ResponseSchema(schema),
        max_tokens=40,
        temperature=0,
    )
    reply = await llama.chat(request)
    data = json.loads(reply.content)
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)


async def test_unknown_model_name_is_refused_here(llama: LlamaCppProvider) -> None:
    with pytest.raises(ModelNotFound):
        await llama.chat(ChatRequest([Message.user("hi")], model="gpt-4o", max_tokens=4))
    reply = await llama.chat(
        ChatRequest([Message.user("hi")], model="SmolLM2-135M-Instruct.Q4_1", max_tokens=4)
    )
    assert reply.content is not None


@pytest.mark.parametrize("streamed", [False, True])
async def test_context_overflow(llama: LlamaCppProvider, streamed: bool) -> None:
    request = ChatRequest([Message.user("word " * (LLAMA_N_CTX + 200))], max_tokens=8)
    with pytest.raises(ContextLengthExceeded) as info:
        await (collect(llama.stream(request)) if streamed else llama.chat(request))
    assert info.value.n_ctx == LLAMA_N_CTX
    assert info.value.n_prompt > LLAMA_N_CTX


async def test_a_second_round_after_a_tool_only_turn_is_accepted(llama: LlamaCppProvider) -> None:
    """An agent's second round carries the assistant turn that only called a tool (no text). OpenAI
    allows its content to be null; llama-cpp-python's request model does not (a 422 every round)."""
    call = ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}')
    request = ChatRequest(
        [
            Message.user("What is the weather in Paris?"),
            Message.assistant("", (call,)),
            Message.tool("call_1", "Sunny, 21 C", "get_weather"),
        ],
        tools=[WEATHER],
        max_tokens=8,
        temperature=0,
    )
    reply = await llama.chat(request)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    # Streamed too (without tools: llama-cpp-python streams no tool-enabled "auto" completion).
    async with llama.stream(dataclasses.replace(request, tools=())) as stream:
        events = [e async for e in stream]
    assert isinstance(events[-1], Done)
