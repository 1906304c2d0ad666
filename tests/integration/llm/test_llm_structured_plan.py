"""The planner's JSON schema on the wire: OpenAI gets it in strict mode (rewritten into the documented
subset), llama.cpp servers get it whole in their own shapes, and each reply becomes a validated plan.

The OpenAI replies are written in the documented ``chat.completion`` wire format (the answer in
``message.content``, a refusal in ``message.refusal``); the llama.cpp one comes from the real server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import jsonschema
import pytest
from llm_replay import LLAMA_N_CTX, TRANSCRIPTS, ReplayServer, json_reply, transcript

from helixcode.agent.planning import PLANNER_PROMPT, SUBTASK_TYPES, PlanResult, ask_for_plan, plan_schema
from helixcode.domain.enums import TaskType
from helixcode.errors import PlanError
from helixcode.llm.errors import ContextLengthExceeded, Refusal
from helixcode.llm.llamacpp import LlamaCppProvider
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.strict_schema import strict_violations, to_strict
from helixcode.llm.types import ChatRequest, ChatResponse

GOAL = "add a --version flag to the CLI and test it"
FILES = "cli.py\ntests/test_cli.py"


def messages(max_subtasks: int) -> list[dict[str, str]]:
    system = PLANNER_PROMPT.format(max_subtasks=max_subtasks, types=", ".join(SUBTASK_TYPES))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Goal: {GOAL}\n\nRepository files:\n{FILES}"},
    ]


@pytest.fixture
async def openai(replay: ReplayServer) -> AsyncIterator[OpenAICompatProvider]:
    async with OpenAICompatProvider(
        "openai", f"{replay.url}/v1", api_key="sk-test", models=["gpt-4o-mini"]
    ) as provider:
        yield provider


async def test_openai_gets_the_plan_schema_in_strict_mode(
    replay: ReplayServer, openai: OpenAICompatProvider
) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_plan_strict.json"))
    result = await ask_for_plan(openai.chat, GOAL, FILES, max_subtasks=3, max_tokens=400, temperature=0.2)

    [sent] = replay.bodies("/v1/chat/completions")
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": messages(3),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "plan", "schema": to_strict(plan_schema(3)), "strict": True},
        },
        "max_tokens": 400,
        "temperature": 0.2,
    }
    schema = sent["response_format"]["json_schema"]["schema"]
    assert strict_violations(schema) == []
    assert "prefixItems" not in json.dumps(schema)

    recorded = json.loads((TRANSCRIPTS / "openai_plan_strict.json").read_text())
    content = recorded["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), schema)  # the reply follows what was sent
    assert result.rounds == 1
    assert result.faults_repaired == []
    assert [(s.id, s.type, s.depends_on) for s in result.subtasks] == [
        ("t1", TaskType.BUILDING, []),
        ("t2", TaskType.TESTING, ["t1"]),
    ]
    assert result.subtasks[0].priority.value == "high"
    assert result.subtasks[1].criticality.value == "normal"  # null: the default
    assert result.subtasks[1].run.agent.model_dump() == {  # type: ignore[attr-defined]
        "check": "python -m pytest -q",
        "files": ["tests/test_cli.py"],
    }
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (214, 121)


async def test_a_strict_mode_refusal_is_a_refusal(replay: ReplayServer, openai: OpenAICompatProvider) -> None:
    replay.add("POST", "/v1/chat/completions", transcript("openai_plan_refusal.json"))
    with pytest.raises(Refusal, match="cannot assist"):
        await ask_for_plan(openai.chat, GOAL, FILES, max_subtasks=3)
    assert len(replay.bodies("/v1/chat/completions")) == 1  # a refusal is final: no repair round


LLAMA_SERVER_MODELS = {
    "object": "list",
    "data": [{"id": "qwen2.5-7b-instruct-q4_k_m.gguf", "object": "model"}],
}
PROPS = {"default_generation_settings": {"n_ctx": 8192}, "chat_template_caps": {"supports_tool_calls": True}}


def plan_reply(model: str) -> dict[str, object]:
    plan = {"subtasks": [{"id": "t1", "type": "building", "title": "Add the flag", "description": "d"}]}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": json.dumps(plan)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 90, "completion_tokens": 30, "total_tokens": 120},
    }


async def test_llama_server_gets_the_whole_schema_as_json_schema(replay: ReplayServer) -> None:
    replay.add("GET", "/props", json_reply(PROPS)).add("GET", "/v1/models", json_reply(LLAMA_SERVER_MODELS))
    replay.add("POST", "/v1/chat/completions", json_reply(plan_reply("qwen2.5-7b-instruct-q4_k_m.gguf")))
    async with LlamaCppProvider("lab", replay.url) as llama:
        result = await ask_for_plan(llama.chat, GOAL, FILES, max_subtasks=3, max_tokens=400)
    assert llama.flavour == "llama.cpp"
    [sent] = replay.bodies("/v1/chat/completions")
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": plan_schema(3), "strict": True},
    }
    assert [s.id for s in result.subtasks] == ["t1"]
    assert sent["cache_prompt"] is True  # llama-server reuses the KV cache of the prompt's prefix


async def test_llama_cpp_python_gets_json_object_with_the_whole_schema(replay: ReplayServer) -> None:
    served = {"object": "list", "data": [{"id": "/models/SmolLM2.gguf", "object": "model"}]}
    replay.add("GET", "/v1/models", json_reply(served))  # no /props: llama-cpp-python
    replay.add("POST", "/v1/chat/completions", json_reply(plan_reply("/models/SmolLM2.gguf")))
    async with LlamaCppProvider("lab", replay.url) as llama:
        await ask_for_plan(llama.chat, GOAL, FILES, max_subtasks=3, max_tokens=400)
    assert llama.flavour == "llama-cpp-python"
    [sent] = replay.bodies("/v1/chat/completions")
    assert sent["response_format"] == {"type": "json_object", "schema": plan_schema(3)}
    assert "cache_prompt" not in sent  # llama-cpp-python does not know it
    assert sent["messages"] == messages(3)


class Recording:
    """A provider's chat that keeps every request with what came back (a response or an error)."""

    def __init__(self, chat: Callable[[ChatRequest], Awaitable[ChatResponse]]) -> None:
        self.chat = chat
        self.rounds: list[tuple[ChatRequest, ChatResponse | Exception]] = []

    async def __call__(self, request: ChatRequest) -> ChatResponse:
        try:
            response = await self.chat(request)
        except Exception as exc:
            self.rounds.append((request, exc))
            raise
        self.rounds.append((request, response))
        return response


@pytest.mark.llm
async def test_the_real_llama_server_plans_under_the_whole_schema(llama_server: str) -> None:
    """Whatever the tiny model writes (greedy output depends on the host's CPU), planning ends typed:
    a valid plan, or ``PlanError`` after one repair round; and the repair round fits the window the
    first round fitted, never a context-length error."""
    async with LlamaCppProvider("llama", llama_server) as llama:
        chat = Recording(llama.chat)
        outcome: PlanResult | PlanError
        try:
            outcome = await ask_for_plan(chat, GOAL, FILES, max_subtasks=2, max_tokens=200, temperature=0)
        except PlanError as exc:
            outcome = exc  # wrong twice: allowed, as long as it is said so
        except ContextLengthExceeded as exc:
            pytest.fail(f"round {len(chat.rounds)} overflowed the {LLAMA_N_CTX}-token window: {exc}")
    assert 1 <= len(chat.rounds) <= 2
    for request, response in chat.rounds:
        assert isinstance(response, ChatResponse), response
        assert response.usage is not None
        assert request.max_tokens is not None
        assert response.usage.prompt_tokens + request.max_tokens <= LLAMA_N_CTX, response.usage
    if isinstance(outcome, PlanResult):
        assert outcome.rounds == len(chat.rounds)
        assert 1 <= len(outcome.subtasks) <= 2
        assert [s.id for s in outcome.subtasks] == [f"t{i}" for i in range(1, len(outcome.subtasks) + 1)]
        assert all(s.type is not TaskType.PLANNING for s in outcome.subtasks)
    else:
        assert len(chat.rounds) == 2
        assert outcome.faults
        assert all(isinstance(f, str) and f for f in outcome.faults)
        assert all(f.startswith("plan still invalid after one repair round: ") for f in outcome.faults)
