"""ggml's ``llama-server``, replayed: ``/health`` (503 while loading), ``/props``, its overflow error."""

from __future__ import annotations

import pytest
from llm_replay import ReplayServer, json_reply

from helixcode.llm import ChatRequest, Message, collect
from helixcode.llm.errors import ContextLengthExceeded
from helixcode.llm.llamacpp import LlamaCppProvider

LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
PROPS = {
    "default_generation_settings": {"n_ctx": 8192, "params": {"n_predict": -1}},
    "total_slots": 1,
    "model_path": "/models/qwen2.5-7b-instruct-q4_k_m.gguf",
    "chat_template": "{% for message in messages %}...{% endfor %}",
    "chat_template_caps": {"supports_tools": True, "supports_tool_calls": True, "supports_system_role": True},
    "modalities": {"vision": False, "audio": False},
    "build_info": "b5500-abcdef0",
}
MODELS = {
    "object": "list",
    "data": [{"id": "qwen2.5-7b-instruct-q4_k_m.gguf", "object": "model", "owned_by": "llamacpp"}],
}
OVERFLOW = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 9000,
        "n_ctx": 8192,
    }
}


@pytest.fixture
def server(replay: ReplayServer) -> ReplayServer:
    replay.add("GET", "/health", json_reply(LOADING, 503), json_reply({"status": "ok"}))
    replay.add("GET", "/props", json_reply(PROPS)).add("GET", "/v1/models", json_reply(MODELS))
    return replay


async def test_loading_then_healthy_and_props(server: ReplayServer) -> None:
    async with LlamaCppProvider("ls", f"{server.url}/v1") as p:
        loading = await p.health()
        assert not loading.ok
        assert "Loading model" in loading.detail
        assert (await p.health()).ok
        [model] = await p.list_models()
    assert p.flavour == "llama.cpp"
    assert model.name == "qwen2.5-7b-instruct-q4_k_m.gguf"
    assert (model.capabilities.tools, model.capabilities.context_length) == (True, 8192)


async def test_overflow_error_with_counts(server: ReplayServer) -> None:
    server.add("POST", "/v1/chat/completions", json_reply(OVERFLOW, 400))
    async with LlamaCppProvider("ls", server.url) as p:
        with pytest.raises(ContextLengthExceeded) as info:
            await collect(p.stream(ChatRequest([Message.user("long")], model="qwen2.5-7b-instruct-q4_k_m")))
    assert (info.value.n_prompt, info.value.n_ctx) == (9000, 8192)
    sent = server.bodies("/v1/chat/completions")[0]
    assert sent["model"] == "qwen2.5-7b-instruct-q4_k_m.gguf"
