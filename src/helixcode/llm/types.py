"""Value objects of the LLM layer: requests, responses, stream events, capabilities, health.

Frozen dataclasses so they can be shared between tasks, hashed, and compared in tests; providers translate
them to and from their wire formats and nothing else in the project sees a wire format.

    req = ChatRequest([Message.system("Be brief."), Message.user("Hi")], max_tokens=64)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "Deadlines",
    "Done",
    "FinishReason",
    "HealthStatus",
    "Message",
    "ModelCapabilities",
    "ModelInfo",
    "NamedTool",
    "ResponseSchema",
    "Role",
    "StreamEvent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallDone",
    "ToolChoice",
    "Usage",
    "UsageEvent",
]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "refusal", "error"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A completed tool call. ``error`` is set when ``raw_arguments`` is not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation; build with the class methods."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str, name: str | None = None) -> Message:
        """The result of a tool call, answered by ``tool_call_id`` (``name`` helps Ollama)."""
        return cls("tool", content, tool_call_id=tool_call_id, name=name)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class NamedTool:
    """Force a call of this tool."""

    name: str


ToolChoice: TypeAlias = Literal["auto", "none", "required"] | NamedTool


@dataclass(frozen=True, slots=True)
class ResponseSchema:
    """Constrain the reply to JSON matching ``schema``. ``strict``: use the server's strict mode where it
    has one (OpenAI: the schema is rewritten into that mode's subset, see ``llm.strict_schema``)."""

    schema: dict[str, Any]
    name: str = "response"
    strict: bool = True


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds. ``first_token`` and ``idle`` catch a stalled stream long before ``total`` would."""

    total: float | None = 300.0
    first_token: float | None = 60.0
    idle: float | None = 30.0
    connect: float = 5.0


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What to ask. ``model`` None means the provider's default (its first configured model)."""

    messages: tuple[Message, ...] | list[Message]
    model: str | None = None
    tools: tuple[Tool, ...] | list[Tool] = ()
    tool_choice: ToolChoice = "auto"
    response_schema: ResponseSchema | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | list[str] = ()
    seed: int | None = None
    deadlines: Deadlines | None = None

    def prompt_chars(self) -> int:
        """Size of the prompt in characters: a tokenizer-free lower bound for overflow checks."""
        return sum(len(m.content) + sum(len(c.raw_arguments) for c in m.tool_calls) for m in self.messages)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Of the prompt tokens, those the provider served from its prompt cache (when it says).
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ChatResponse:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    model: str = ""
    provider: str = ""


# --- stream events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of call ``index``; ``id``/``name`` are set on the fragment that first carried them."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallDone:
    index: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class UsageEvent:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: FinishReason
    model: str = ""


StreamEvent: TypeAlias = TextDelta | ToolCallDelta | ToolCallDone | UsageEvent | Done


# --- discovery -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelCapabilities:
    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    embeddings: bool = False
    streaming: bool = True
    context_length: int | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    provider: str
    capabilities: ModelCapabilities = ModelCapabilities()


@dataclass(frozen=True, slots=True)
class HealthStatus:
    ok: bool
    detail: str = ""
    latency_s: float | None = None
