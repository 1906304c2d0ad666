"""The tool loop with a scripted model: a call whose arguments did not parse is never run.

A reply cut off at ``max_tokens`` leaves a tool call's JSON unfinished; running a guess at it could
write a cut-off file. The loop answers with a tool result saying the call was not executed, with the
parse error, and the model's next (whole) call is run as usual.
"""

from __future__ import annotations

import json
from pathlib import Path

from helixcode.agent.loop import AgentLoop, LoopLimits, LoopState
from helixcode.agent.prompts import PROFILES
from helixcode.agent.tools import Toolset, WorkspaceTools
from helixcode.domain.enums import TaskType
from helixcode.llm.toolcalls import parse_arguments
from helixcode.llm.types import ChatRequest, ChatResponse, FinishReason, Message, ToolCall, Usage

CUT = '{"path": "a.py", "content": "print(1'
WHOLE = json.dumps({"path": "a.py", "content": "print(1)\n"})
FINISH = json.dumps({"summary": "wrote a.py"})


def reply(call_id: str, name: str, raw: str, finish_reason: FinishReason = "tool_calls") -> ChatResponse:
    arguments, error = parse_arguments(raw)
    call = ToolCall(call_id, name, arguments, raw, error)
    return ChatResponse("", (call,), finish_reason, Usage(50, 16))


class Scripted:
    """Answers with the given replies in turn and keeps the requests."""

    def __init__(self, *replies: ChatResponse) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []

    async def __call__(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return self.replies.pop(0)


def fresh() -> LoopState:
    return LoopState([Message.system("You write code."), Message.user("Create a.py that prints 1.")])


async def test_a_call_whose_arguments_did_not_parse_is_not_executed(tmp_path: Path) -> None:
    chat = Scripted(
        reply("c1", "write_file", CUT, "length"),
        reply("c2", "write_file", WHOLE),
        reply("c3", "finish", FINISH),
    )
    tools = Toolset(WorkspaceTools(tmp_path), PROFILES[TaskType.BUILDING].tools)
    seen: list[tuple[int, bool, int]] = []

    async def after_round(state: LoopState) -> None:
        seen.append((state.rounds, (tmp_path / "a.py").exists(), state.tool_calls))

    state = await AgentLoop(chat, tools, LoopLimits(max_rounds=5), after_round).run(fresh())

    assert seen == [(1, False, 1), (2, True, 2), (3, True, 3)]  # round 1 counts, writes nothing
    error = parse_arguments(CUT)[1]
    assert error
    answer = state.messages[3]
    assert (answer.role, answer.tool_call_id, answer.name) == ("tool", "c1", "write_file")
    assert "NOT executed" in answer.content
    assert "did not parse" in answer.content
    assert error in answer.content
    assert "cut off at the token limit" in answer.content
    assert "edit_file" in answer.content  # a shorter way to make the change
    assert state.messages[2].tool_calls[0].raw_arguments == CUT  # the model sees what it sent
    assert chat.requests[1].messages[3] == answer
    assert (tmp_path / "a.py").read_text() == "print(1)\n"
    assert state.files_written == ["a.py"]
    assert (state.stop_reason, state.summary, state.rounds, state.tool_calls) == (
        "finished",
        "wrote a.py",
        3,
        3,
    )


async def test_invalid_json_that_was_not_cut_asks_for_valid_json(tmp_path: Path) -> None:
    """A whole reply with bad JSON (here: a trailing comma) is not run either; nothing says it was cut."""
    chat = Scripted(reply("c1", "write_file", '{"path": "b.py", "content": "x",}'))
    tools = Toolset(WorkspaceTools(tmp_path), PROFILES[TaskType.BUILDING].tools)
    state = fresh()
    await AgentLoop(chat, tools, LoopLimits()).step(state)
    answer = state.messages[-1].content
    assert "NOT executed" in answer
    assert "valid JSON" in answer
    assert "cut off" not in answer
    assert not (tmp_path / "b.py").exists()
    assert (state.tool_calls, state.files_written) == (1, [])
