"""The tool-calling loop: model call -> tool calls -> tool results, round after round, until ``finish``.

The loop knows nothing of the database or git: it gets a ``chat`` function, a ``Toolset`` and a hook
called after every round (where the executor commits and checkpoints). Its state is plain data that
round-trips through JSON, so a resumed attempt continues the same conversation.

Rounds use ``tool_choice="required"`` so every round is real tool traffic (or, with ``named_only``, a
named tool each round); a reply without a tool call
gets a reminder and the next round forces the profile's working tool by name; the last round forces
``finish`` so the task always ends with a summary. Old turns are dropped from the prompt (never from
the saved state) to fit the model's window.

A call whose arguments did not parse (often cut off at ``max_tokens``) is never run: guessing the rest
could write a cut-off file. Its tool result says so, with the parse error, and asks for a shorter call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from helixcode import tracing
from helixcode.agent.tools import ToolResult, Toolset
from helixcode.llm.errors import ContextLengthExceeded, NoCandidate
from helixcode.llm.types import ChatRequest, ChatResponse, Message, NamedTool, ToolCall, ToolChoice

__all__ = ["AgentLoop", "LoopLimits", "LoopState", "message_from_json", "message_to_json"]

ChatFn = Callable[[ChatRequest], Awaitable[ChatResponse]]
RoundHook = Callable[["LoopState"], Awaitable[None]]

TOOL_RESULT_CHARS = 1500
REMINDER = "Reply with exactly one tool call. Call finish with a summary when the task is done."


@dataclass(frozen=True, slots=True)
class LoopLimits:
    max_rounds: int = 8
    token_budget: int | None = None
    max_tokens: int = 512
    temperature: float | None = 0.2
    history_chars: int = 12_000
    nudge_tool: str | None = None  # forced after a reply with no tool call
    #: Force a named tool every round (``nudge_tool``, then ``finish`` last): for providers that can force
    #: one named tool but not "any tool" (llama-cpp-python turns "required" into "auto" when there are
    #: several tools, and its "auto" mode may run on to the end of the window).
    named_only: bool = False


@dataclass
class LoopState:
    messages: list[Message]
    rounds: int = 0
    tokens: int = 0
    tool_calls: int = 0
    finished: bool = False
    summary: str | None = None
    reported: float | None = None
    note: str | None = None
    stop_reason: str | None = None
    idle_rounds: int = 0
    files_written: list[str] = field(default_factory=list)

    def progress(self, max_rounds: int) -> float:
        """Rounds used of the budget, refined by what the model itself reported."""
        by_rounds = self.rounds / max(1, max_rounds)
        value = by_rounds if self.reported is None else max(by_rounds, self.reported)
        return 1.0 if self.finished else min(0.99, value)

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [message_to_json(m) for m in self.messages],
            "rounds": self.rounds,
            "tokens": self.tokens,
            "tool_calls": self.tool_calls,
            "finished": self.finished,
            "summary": self.summary,
            "reported": self.reported,
            "note": self.note,
            "stop_reason": self.stop_reason,
            "idle_rounds": self.idle_rounds,
            "files_written": self.files_written,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopState:
        return cls(
            messages=[message_from_json(m) for m in data["messages"]],
            rounds=int(data.get("rounds", 0)),
            tokens=int(data.get("tokens", 0)),
            tool_calls=int(data.get("tool_calls", 0)),
            finished=bool(data.get("finished", False)),
            summary=data.get("summary"),
            reported=data.get("reported"),
            note=data.get("note"),
            stop_reason=data.get("stop_reason"),
            idle_rounds=int(data.get("idle_rounds", 0)),
            files_written=list(data.get("files_written", [])),
        )


def message_to_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments, "raw": c.raw_arguments, "error": c.error}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out


def message_from_json(d: Mapping[str, Any]) -> Message:
    calls = tuple(
        ToolCall(c["id"], c["name"], dict(c.get("arguments") or {}), c.get("raw", ""), c.get("error"))
        for c in d.get("tool_calls", ())
    )
    return Message(d["role"], d.get("content", ""), calls, d.get("tool_call_id"), d.get("name"))


class AgentLoop:
    def __init__(
        self, chat: ChatFn, tools: Toolset, limits: LoopLimits, on_round: RoundHook | None = None
    ) -> None:
        self.chat = chat
        self.tools = tools
        self.limits = limits
        self.on_round = on_round

    async def run(self, state: LoopState) -> LoopState:
        """Go on from ``state`` (fresh or restored) until finish, the round limit or the token budget."""
        while not state.finished:
            if state.rounds >= self.limits.max_rounds:
                state.stop_reason = "round_limit"
                break
            if self.limits.token_budget is not None and state.tokens >= self.limits.token_budget:
                state.stop_reason = "token_budget"
                break
            await self.step(state)
            if self.on_round is not None:
                await self.on_round(state)
        if state.finished:
            state.stop_reason = "finished"
        return state

    def choice(self, state: LoopState) -> ToolChoice:
        names = {t.name for t in self.tools.specs()}
        if state.rounds >= self.limits.max_rounds - 1:
            return NamedTool("finish")
        last = state.messages[-1] if state.messages else None
        nudge = self.limits.nudge_tool
        if self.limits.named_only:
            return NamedTool(nudge if nudge in names else "finish")
        if last is not None and last.role == "user" and last.content == REMINDER and nudge in names:
            return NamedTool(nudge)
        return "required"

    async def step(self, state: LoopState) -> None:
        """One round: ask the model, run the tools it called, append everything to the state."""
        reply = await self._ask(state)
        state.rounds += 1
        usage = reply.usage
        state.tokens += usage.total_tokens if usage else (len(reply.content) // 4 + 1)
        if not reply.tool_calls:
            state.idle_rounds += 1
            state.messages.append(Message.assistant(reply.content[:TOOL_RESULT_CHARS]))
            state.messages.append(Message.user(REMINDER))
            return
        state.messages.append(Message.assistant(reply.content[:TOOL_RESULT_CHARS], reply.tool_calls))
        for call in reply.tool_calls:
            result = await self._run_tool(call, cut=reply.finish_reason == "length")
            state.tool_calls += 1  # attempted, even when it was not run
            self._note(state, call, result)
            content = result.content
            if len(content) > TOOL_RESULT_CHARS:
                content = content[:TOOL_RESULT_CHARS] + "\n... (cut)"
            state.messages.append(Message.tool(call.id, content, call.name))

    async def _run_tool(self, call: ToolCall, *, cut: bool = False) -> ToolResult:
        """Run one call; a call whose arguments did not parse is never run (a guess at what was
        meant could write a cut-off file), the model is told why and asked again."""
        with tracing.tool_span(call.name, call.id) as span:
            result = (
                await self.tools.call(call.name, call.arguments)
                if not call.error
                else ToolResult(False, self._unparsed(call, cut))
            )
            tracing.tool_result(span, result.ok, result.content)
        return result

    def _unparsed(self, call: ToolCall, cut: bool) -> str:
        text = f"{call.name} was NOT executed: its arguments did not parse as a JSON object ({call.error})."
        # A JSON object that does not end in "}" was cut off, whatever the finish reason said.
        if not cut and call.raw_arguments.rstrip().endswith("}"):
            return text + " Call it again with valid JSON arguments."
        shorter = "write a smaller file"
        if "edit_file" in {t.name for t in self.tools.specs()}:
            shorter += ", or change part of a file with edit_file"
        return (
            text + f" The reply was cut off at the token limit: make a shorter call (for example {shorter})."
        )

    @staticmethod
    def _note(state: LoopState, call: ToolCall, result: ToolResult) -> None:
        if not result.ok:
            return
        if call.name == "finish":
            state.finished = True
            state.summary = str(result.data.get("summary") or "").strip() or "finished"
        elif call.name == "report_progress":
            state.reported = float(result.data["fraction"])
            state.note = result.data.get("note") or state.note
        elif call.name in ("write_file", "edit_file") and (path := result.data.get("path")):
            state.files_written = list(dict.fromkeys([*state.files_written, path]))

    async def _ask(self, state: LoopState) -> ChatResponse:
        budget = self.limits.history_chars
        for _ in range(3):
            request = ChatRequest(
                window(state.messages, budget),
                tools=self.tools.specs(),
                tool_choice=self.choice(state),
                max_tokens=self.limits.max_tokens,
                temperature=self.limits.temperature,
            )
            try:
                return await self.chat(request)
            except (ContextLengthExceeded, NoCandidate) as exc:
                if isinstance(exc, NoCandidate) and "context" not in str(exc):
                    raise
                budget //= 2
        request = ChatRequest(
            window(state.messages, 0),
            tools=self.tools.specs(),
            tool_choice=NamedTool("finish"),
            max_tokens=self.limits.max_tokens,
            temperature=self.limits.temperature,
        )
        return await self.chat(request)


def window(messages: Sequence[Message], budget: int) -> list[Message]:
    """The head (system + task) and as many of the latest whole turns as fit in ``budget`` characters.

    A turn starts at an assistant or user message, so a tool result is never sent without the call
    it answers.
    """
    head = list(messages[:2])
    rest = list(messages[2:])
    size = 0
    cut = len(rest)
    for i in range(len(rest) - 1, -1, -1):
        m = rest[i]
        size += len(m.content) + sum(len(c.raw_arguments) for c in m.tool_calls)
        if m.role != "tool":
            if size > budget and cut < len(rest):
                break
            cut = i
    return head + rest[cut:]
