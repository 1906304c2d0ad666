"""The planner's repair round, without a model: it must fit the window the first round fitted.

The repair prompt is the first prompt plus a bounded note of the faults, however long the invalid
reply was (it used to carry the whole reply back as an assistant turn, and overflowed a small window).
"""

from __future__ import annotations

import json

import pytest

from helixcode.agent.planning import EXCERPT_CHARS, FAULT_CHARS, ask_for_plan, validate_plan
from helixcode.errors import PlanError
from helixcode.llm.types import ChatRequest, ChatResponse, FinishReason, Usage

REPAIR_BOUND = 600  # characters the repair round may add to the first prompt, whatever the reply


def chars(request: ChatRequest) -> int:
    return sum(len(m.content) for m in request.messages)


def many_faults(count: int = 20) -> str:
    """``count`` subtasks with an unknown type and long fields: many long faults in a long body."""
    subtasks = [
        {"id": f"t{i}", "type": "cooking", "title": "x" * 400, "description": "y" * 2000}
        for i in range(1, count + 1)
    ]
    return json.dumps({"subtasks": subtasks})


def cut_off() -> str:
    """A long plan cut off mid-string, as at the token limit: not JSON at all."""
    return many_faults()[:30_000]


VALID = json.dumps({"subtasks": [{"id": "t1", "type": "building", "title": "a", "description": "b"}]})


class Scripted:
    """Answers with the given replies in turn and keeps the requests."""

    def __init__(self, *replies: tuple[str, FinishReason]) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    async def __call__(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        content, finish_reason = self.replies.pop(0)
        return ChatResponse(content, finish_reason=finish_reason, usage=Usage(10, 20))


def faults_of(reply: str) -> list[str]:
    with pytest.raises(PlanError) as caught:
        validate_plan(reply, max_subtasks=30)
    return caught.value.faults


@pytest.mark.parametrize(
    ("invalid", "finish_reason"), [(many_faults(), "stop"), (cut_off(), "length")], ids=["faults", "cut"]
)
async def test_the_repair_round_adds_a_bounded_note_to_the_first_prompt(
    invalid: str, finish_reason: FinishReason
) -> None:
    assert len(invalid) >= 30_000
    faults = faults_of(invalid)

    chat = Scripted((invalid, finish_reason), (VALID, "stop"))
    result = await ask_for_plan(chat, "goal", "a.py\nb.py", max_subtasks=30)

    assert [s.id for s in result.subtasks] == ["t1"]
    assert (result.rounds, result.faults_repaired) == (2, faults)  # the faults kept whole
    first, second = chat.requests
    assert chars(second) <= chars(first) + REPAIR_BOUND
    assert [m.role for m in second.messages] == ["system", "user"]  # no assistant turn with the reply
    assert second.messages[0] == first.messages[0]
    assert second.messages[1].content.startswith(first.messages[1].content)
    assert (second.response_schema, second.max_tokens) == (first.response_schema, first.max_tokens)
    note = second.messages[1].content.removeprefix(first.messages[1].content)
    assert faults[0][: FAULT_CHARS - 3] in note  # the faults, cut short
    if len(faults) > 1:
        assert "more)" in note
    if finish_reason == "length":
        assert "cut off at the token limit" in note
        assert invalid[: EXCERPT_CHARS - 3] in note  # the start of a reply that is not JSON
    else:
        assert "It began" not in note  # the faults quote what was wrong


async def test_a_second_invalid_plan_fails_with_its_faults() -> None:
    chat = Scripted((many_faults(2), "stop"), ("not json", "stop"))
    with pytest.raises(PlanError) as caught:
        await ask_for_plan(chat, "goal")
    assert caught.value.faults == [
        "plan still invalid after one repair round: plan: not valid JSON (Expecting value at character 0)"
    ]
    assert len(chat.requests) == 2
    assert chars(chat.requests[1]) <= chars(chat.requests[0]) + REPAIR_BOUND


async def test_an_empty_reply_is_repaired_too() -> None:
    chat = Scripted(("", "stop"), (VALID, "stop"))
    result = await ask_for_plan(chat, "goal")
    assert result.rounds == 2
    note = chat.requests[1].messages[-1].content
    assert "It was empty." in note
    assert "not valid JSON" in note
