"""Wire translation of every provider, without I/O: payloads out, events in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from helixcode.llm import anthropic, llamacpp, ollama, openai_compat
from helixcode.llm.base import ChatStream, collect
from helixcode.llm.errors import (
    ContextLengthExceeded,
    ModelNotFound,
    Overloaded,
    ProviderTimeout,
    ServerError,
)
from helixcode.llm.types import (
    ChatRequest,
    Deadlines,
    Done,
    Message,
    ModelCapabilities,
    NamedTool,
    ResponseSchema,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDone,
)

TOOL = Tool("f", "does f", {"type": "object", "properties": {"a": {"type": "integer"}}})
CALL = ToolCall("call_1", "f", {"a": 1}, '{"a": 1}')
HISTORY = [
    Message.system("sys"),
    Message.user("u"),
    Message.assistant("", (CALL,)),
    Message.tool("call_1", "result", name="f"),
]


def test_openai_payload() -> None:
    req = ChatRequest(
        HISTORY,
        tools=[TOOL],
        tool_choice=NamedTool("f"),
        response_schema=ResponseSchema({"type": "object"}, name="out"),
        max_tokens=5,
        stop=["x"],
        temperature=0.0,
    )
    body = openai_compat.build_payload(req, "m", stream=True)
    assert body["messages"][2]["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a": 1}'},
    }
    assert body["messages"][2]["content"] is None
    assert body["messages"][3] == {"role": "tool", "content": "result", "tool_call_id": "call_1"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"]["json_schema"] == {
        "name": "out",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert (body["max_tokens"], body["stop"], body["temperature"]) == (5, ["x"], 0.0)
    assert body["stream_options"] == {"include_usage": True}
    assert "seed" not in body


def test_openai_finish_reason_follows_the_calls() -> None:
    assert openai_compat.finish_reason("stop", True) == "tool_calls"
    assert openai_compat.finish_reason("tool_calls", False) == "stop"
    assert openai_compat.finish_reason("length", True) == "length"
    assert openai_compat.finish_reason(None, False) == "stop"


def test_openai_chunk_decoder_refusal_and_usage() -> None:
    dec = openai_compat.ChunkDecoder("m")
    dec.feed({"choices": [{"index": 0, "delta": {"refusal": "I can't"}}]})
    events = dec.feed({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    assert events[0].usage.total_tokens == 3  # type: ignore[union-attr]
    assert dec.finish()[-1] == Done("refusal", "m")


def test_ollama_payload_and_tool_choice() -> None:
    req = ChatRequest(HISTORY, tools=[TOOL, Tool("g")], tool_choice=NamedTool("f"), max_tokens=9, seed=3)
    body = ollama.build_chat_payload(req, "llama3.2", num_ctx=4096, stream=True)
    assert body["options"] == {"num_ctx": 4096, "num_predict": 9, "seed": 3}
    assert [t["function"]["name"] for t in body["tools"]] == ["f"]
    assert body["messages"][2]["tool_calls"] == [{"function": {"name": "f", "arguments": {"a": 1}}}]
    none = ollama.build_chat_payload(
        ChatRequest(HISTORY, tools=[TOOL], tool_choice="none"), "m", num_ctx=1, stream=False
    )
    assert "tools" not in none


def test_ollama_truncation_rule() -> None:
    assert ollama.silently_truncated(40_000, 2048, 2048)  # ~10k tokens evaluated as 2k
    assert not ollama.silently_truncated(4_000, 900, 2048)  # fits
    assert not ollama.silently_truncated(40_000, None, 2048)
    assert not ollama.silently_truncated(40_000, 10_500, 16384)  # fits the larger window


def test_ollama_decoder_errors() -> None:
    dec = ollama.NdjsonDecoder(provider="o", model="m", prompt_chars=10, num_ctx=2048)
    with pytest.raises(ModelNotFound):
        dec.feed({"error": "model 'm' not found"})
    with pytest.raises(ServerError):
        dec.feed({"error": "unexpected EOF"})
    big = ollama.NdjsonDecoder(provider="o", model="m", prompt_chars=100_000, num_ctx=2048)
    with pytest.raises(ContextLengthExceeded):
        big.feed({"done": True, "prompt_eval_count": 2048, "eval_count": 1})


def test_ollama_capabilities_from_show() -> None:
    show = {"capabilities": ["completion", "vision"], "model_info": {"gemma3.context_length": 4096}}
    caps = ollama.capabilities_from_show(show, None)
    assert (caps.tools, caps.vision, caps.context_length) == (False, True, 4096)
    assert ollama.capabilities_from_show(show, 16384).context_length == 16384
    assert ollama.capabilities_from_show({"capabilities": ["embedding"]}, None).embeddings


def test_anthropic_payload() -> None:
    req = ChatRequest([*HISTORY, Message.user("more")], tools=[TOOL], tool_choice="auto", stop=["END"])
    body = anthropic.build_messages_payload(req, "claude", stream=True)
    # the stable prefix (system prompt, tools) ends in cache breakpoints
    assert body["system"] == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["max_tokens"] == anthropic.DEFAULT_MAX_TOKENS
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]  # the tool result and the next user turn are merged
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}
    ]
    assert body["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": "result",
    }
    assert body["tool_choice"] == {"type": "auto"}
    assert body["stop_sequences"] == ["END"]


def test_anthropic_decoder_error_and_stop_reasons() -> None:
    dec = anthropic.EventDecoder(provider="a", model="m")
    with pytest.raises(Overloaded):
        dec.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    dec.feed(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}},
    )
    assert dec.feed("message_stop", {"type": "message_stop"})[-1] == Done("length", "m")


def test_llamacpp_props_and_names() -> None:
    props = {
        "default_generation_settings": {"n_ctx": 8192},
        "chat_template_caps": {"supports_tool_calls": False},
        "modalities": {"vision": True, "audio": False},
    }
    caps = llamacpp.capabilities_from_props(props, ModelCapabilities(tools=True))
    assert (caps.tools, caps.vision, caps.context_length) == (False, True, 8192)
    assert (
        llamacpp.capabilities_from_props({}, ModelCapabilities(tools=True, context_length=7)).context_length
        == 7
    )
    served = ["/models/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert llamacpp.match_model(None, served) == served[0]
    assert llamacpp.match_model("SmolLM2-135M-Instruct.Q4_1", served) == served[0]
    assert llamacpp.match_model("gpt-4o", served) is None


def test_llama_cpp_python_required_choice_is_adapted() -> None:
    one = ChatRequest([Message.user("x")], tools=[TOOL], tool_choice="required")
    assert llamacpp.adapt_for_llama_cpp_python(one).tool_choice == NamedTool("f")
    two = ChatRequest([Message.user("x")], tools=[TOOL, Tool("g")], tool_choice="required")
    assert llamacpp.adapt_for_llama_cpp_python(two).tool_choice == "auto"


async def _events(*items: StreamEvent | float) -> AsyncGenerator[StreamEvent, None]:
    for item in items:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


async def test_chat_stream_first_token_and_idle_deadlines() -> None:
    slow_start = ChatStream(
        _events(0.2, TextDelta("a")), provider="p", model="m", deadlines=Deadlines(first_token=0.05)
    )
    with pytest.raises(ProviderTimeout, match="first token"):
        await collect(slow_start)
    stalled = ChatStream(
        _events(TextDelta("a"), 0.2, TextDelta("b")), provider="p", model="m", deadlines=Deadlines(idle=0.05)
    )
    with pytest.raises(ProviderTimeout, match="no event"):
        await collect(stalled)
    assert stalled.response.content == "a"


async def test_chat_stream_accumulates_a_response() -> None:
    stream = ChatStream(
        _events(TextDelta("x"), ToolCallDone(0, CALL), Done("tool_calls", "served")),
        provider="p",
        model="m",
        deadlines=Deadlines(),
    )
    async with stream:
        [e async for e in stream]
    reply = stream.response
    assert (reply.content, reply.tool_calls, reply.finish_reason, reply.model) == (
        "x",
        (CALL,),
        "tool_calls",
        "served",
    )
