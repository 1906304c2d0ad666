"""Choosing the model by the task's needs, against the real llama.cpp server and loopback replays.

The real server (SmolLM2-135M, a 512-token window, tool calls) stands beside replayed
OpenAI-compatible providers whose capabilities are declared in config, as they would be for a remote
service. A planning task must land on the larger window, a task that works through tools must skip a
model without tool support, the task's ``model:NAME`` pins, ``--provider``/``--model`` override, and
falling back still works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePath

import pytest
from llm_replay import LLAMA_N_CTX, ReplayServer, json_reply, transcript

from helixcode.agent.executors.agent import AgentExecutor, AgentOptions
from helixcode.agent.model_needs import model_needs
from helixcode.agent.planning import PlanResult, ask_for_plan
from helixcode.agent.services import AgentServices
from helixcode.domain.enums import TaskType
from helixcode.domain.plan import parse_plan
from helixcode.errors import PlanError
from helixcode.llm import ChatRequest, ChatResponse, LLMManager, Message, NamedTool, ProviderEntry, Tool
from helixcode.llm.errors import NoCandidate
from helixcode.llm.llamacpp import LlamaCppProvider
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.llm.policy import Requirements
from helixcode.llm.types import ModelCapabilities
from helixcode.store.store import Store

GOAL = "add a --version flag to the CLI and test it"
WRITE = Tool(
    "write_file",
    "Write a file",
    {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
)
EDIT = ChatRequest(
    [Message.user("Create hello.py that prints hello.")],
    tools=[WRITE],
    tool_choice=NamedTool("write_file"),
    max_tokens=48,
    temperature=0,
)
WIDE = ModelCapabilities(tools=False, json_schema=True, context_length=128_000)
LLAMA = ModelCapabilities(tools=True, json_schema=True, context_length=LLAMA_N_CTX)


def serving(server: ReplayServer, model: str) -> ReplayServer:
    return server.add("GET", "/v1/models", json_reply({"object": "list", "data": [{"id": model}]}))


def openai_entry(server: ReplayServer, name: str, caps: ModelCapabilities, priority: int) -> ProviderEntry:
    provider = OpenAICompatProvider(name, f"{server.url}/v1", models=["gpt-4o-mini"], capabilities=caps)
    return ProviderEntry(provider, priority)


def chats(server: ReplayServer) -> int:
    return len(server.bodies("/v1/chat/completions"))


def for_task(
    llm: LLMManager, needs: Requirements, provider: str | None = None
) -> Callable[[ChatRequest], Awaitable[ChatResponse]]:
    """What the agent executor does with every model call of a task: the manager, with its needs."""

    async def chat(request: ChatRequest) -> ChatResponse:
        return await llm.chat(request, requirements=needs, provider=provider)

    return chat


async def plan_with_any_outcome(
    chat: Callable[[ChatRequest], Awaitable[ChatResponse]],
) -> PlanResult | PlanError:
    """A plan from the real tiny model, or the fault it made twice: these tests are about where the
    calls go, which must hold whatever the model (compiled for this CPU) writes."""
    outcome: PlanResult | PlanError
    try:
        outcome = await ask_for_plan(chat, GOAL, max_subtasks=2, max_tokens=200, temperature=0)
    except PlanError as exc:
        outcome = exc
    if isinstance(outcome, PlanError):
        assert outcome.faults
        assert all(isinstance(f, str) for f in outcome.faults)
    else:
        assert 1 <= len(outcome.subtasks) <= 2
    return outcome


def rounds_of(outcome: PlanResult | PlanError) -> int:
    return outcome.rounds if isinstance(outcome, PlanResult) else 2


@pytest.fixture
async def mixed(llama_server: str, replay: ReplayServer) -> AsyncIterator[LLMManager]:
    """``wide``: a replayed service with a 128k window and no tool support, the less preferred;
    ``llama``: the real server, 512 tokens, tool calls, preferred."""
    serving(replay, "gpt-4o-mini").add("POST", "/v1/chat/completions", transcript("openai_plan_strict.json"))
    entries = {
        "wide": openai_entry(replay, "wide", WIDE, priority=20),
        "llama": ProviderEntry(LlamaCppProvider("llama", llama_server, capabilities=LLAMA), priority=5),
    }
    async with LLMManager(entries) as llm:
        yield llm


@pytest.mark.llm
async def test_planning_lands_on_the_larger_window(mixed: LLMManager, replay: ReplayServer) -> None:
    result = await ask_for_plan(for_task(mixed, model_needs(TaskType.PLANNING)), GOAL, max_subtasks=3)
    assert [r.provider for r in mixed.records] == ["wide"]
    assert [s.id for s in result.subtasks] == ["t1", "t2"]
    assert replay.bodies("/v1/chat/completions")[0]["response_format"]["json_schema"]["strict"] is True


@pytest.mark.llm
async def test_a_task_that_needs_tools_skips_the_model_without_them(
    mixed: LLMManager, replay: ReplayServer
) -> None:
    reply = await for_task(mixed, model_needs(TaskType.BUILDING))(EDIT)
    assert reply.provider == "llama"
    assert chats(replay) == 0
    [call] = reply.tool_calls
    assert call.name == "write_file"
    # Selection is the point; the tiny model's arguments depend on the host (llama.cpp compiles per
    # CPU) and may be cut at max_tokens. Either outcome is typed: parsed arguments, or the fault named
    # with what arrived kept.
    if call.error is None:
        assert isinstance(call.arguments, dict)
        assert "path" in call.arguments
    else:
        assert isinstance(call.error, str)
        assert "JSON" in call.error
        assert call.arguments == {}
        assert call.raw_arguments
    order = [c.provider for c in await mixed.candidates(EDIT, model_needs(TaskType.BUILDING))]
    assert order == ["llama"]
    # a diagram writes its .mmd through tools too: the same choice
    assert [c.provider for c in await mixed.candidates(EDIT, model_needs(TaskType.DIAGRAM))] == ["llama"]


@pytest.mark.llm
async def test_provider_model_and_pins_override_the_ranking(mixed: LLMManager, replay: ReplayServer) -> None:
    planning = model_needs(TaskType.PLANNING)
    stem = PurePath(next(c.model for c in await mixed.catalog() if c.provider == "llama")).stem
    # --provider llama: every round of the plan (one, or two with a repair) goes there
    outcome = await plan_with_any_outcome(for_task(mixed, planning, provider="llama"))
    assert [r.provider for r in mixed.records] == ["llama"] * rounds_of(outcome)
    # --model <the llama model>, and a plan that requires model:<it>: both pin
    for needs in (
        model_needs(TaskType.PLANNING, model=stem),
        model_needs(TaskType.PLANNING, ["git", "llm", f"model:{stem}"]),
    ):
        assert [c.provider for c in await mixed.candidates(EDIT, needs)] == ["llama"]
    # --model gpt-4o-mini overrides a pin to the llama model
    overridden = model_needs(TaskType.PLANNING, [f"model:{stem}"], model="gpt-4o-mini")
    assert [c.provider for c in await mixed.candidates(ChatRequest([]), overridden)] == ["wide"]
    # a pin never lifts a need: the pinned model lacks tools
    with pytest.raises(NoCandidate):
        await for_task(mixed, model_needs(TaskType.BUILDING, ["model:gpt-4o-mini"]))(EDIT)
    assert chats(replay) == 0


@pytest.mark.llm
async def test_the_real_server_wins_planning_when_its_window_is_the_larger(
    llama_server: str, replay: ReplayServer
) -> None:
    serving(replay, "gpt-4o-mini")
    tiny = ModelCapabilities(tools=True, json_schema=True, context_length=256)
    entries = {
        "tiny": openai_entry(replay, "tiny", tiny, priority=1),
        "llama": ProviderEntry(LlamaCppProvider("llama", llama_server, capabilities=LLAMA), priority=5),
    }
    async with LLMManager(entries) as llm:
        outcome = await plan_with_any_outcome(for_task(llm, model_needs(TaskType.PLANNING)))
        assert [r.provider for r in llm.records] == ["llama"] * rounds_of(outcome)
        assert [c.provider for c in await llm.candidates(EDIT, model_needs(TaskType.BUILDING))] == [
            "tiny",
            "llama",
        ]  # for other work, priority decides
    assert chats(replay) == 0


async def test_planning_falls_back_when_the_larger_window_is_down(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    serving(replay, "gpt-4o-mini")
    serving(replay2, "gpt-4o-mini").add("POST", "/v1/chat/completions", transcript("openai_plan_strict.json"))
    entries = {
        "big": openai_entry(replay, "big", WIDE, priority=20),
        "small": openai_entry(replay2, "small", ModelCapabilities(json_schema=True, context_length=8192), 1),
    }
    async with LLMManager(entries) as llm:
        assert [
            c.provider for c in await llm.candidates(ChatRequest([]), model_needs(TaskType.PLANNING))
        ] == [
            "big",
            "small",
        ]
        replay.stop()
        result = await ask_for_plan(for_task(llm, model_needs(TaskType.PLANNING)), GOAL, max_subtasks=3)
    assert [(r.provider, r.ok) for r in llm.records] == [("big", False), ("small", True)]
    assert [s.id for s in result.subtasks] == ["t1", "t2"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_executor_asks_with_the_claimed_tasks_needs(
    store: Store, replay: ReplayServer, replay2: ReplayServer
) -> None:
    """Through the agent executor's own chat function, with a task as a worker claims it: its type and
    its ``requires`` choose the model; the task's options (``--provider``/``--model``) override."""
    serving(replay, "gpt-4o-mini").add("POST", "/v1/chat/completions", transcript("openai_plan_strict.json"))
    serving(replay2, "gpt-4o").add("POST", "/v1/chat/completions", transcript("openai_plan_strict.json"))
    caps = ModelCapabilities(tools=True, json_schema=True, context_length=128_000)
    other = OpenAICompatProvider("other", f"{replay2.url}/v1", models=["gpt-4o"], capabilities=caps)
    entries = {"preferred": openai_entry(replay, "preferred", caps, 1), "other": ProviderEntry(other, 2)}
    plan = {"id": "plan", "type": "planning", "title": GOAL, "requires": ["git", "llm", "model:gpt-4o"]}
    await store.create_job(parse_plan({"tasks": [plan]}), workdir="/tmp")
    [claim] = await store.claim("w1", ["git", "llm", "model:gpt-4o", "model:gpt-4o-mini"], 1)
    async with LLMManager(entries) as llm:
        services = AgentServices(store.settings, store, llm, owned=False)
        pinned = AgentExecutor._chat(services, AgentOptions(), claim.task)
        await ask_for_plan(pinned, GOAL, max_subtasks=3)
        overridden = AgentExecutor._chat(services, AgentOptions(model="gpt-4o-mini"), claim.task)
        await ask_for_plan(overridden, GOAL, max_subtasks=3)
        by_provider = AgentExecutor._chat(services, AgentOptions(provider="preferred"), claim.task)
        with pytest.raises(NoCandidate):  # the task pins gpt-4o, which that provider does not serve
            await ask_for_plan(by_provider, GOAL, max_subtasks=3)
    assert [r.provider for r in llm.records] == ["other", "preferred"]
    assert (chats(replay), chats(replay2)) == (1, 1)
