"""The LLM layer: one async provider interface, providers, and a manager with health, selection and fallback.

from helixcode.llm import ChatRequest, Message, build_manager
async with build_manager(settings) as llm:
    reply = await llm.chat(ChatRequest([Message.user("Say hi")], max_tokens=32))
"""

from helixcode.llm.base import ChatStream, Provider, collect
from helixcode.llm.errors import (
    ContextLengthExceeded,
    FinalError,
    LLMError,
    NoCandidate,
    RetryableError,
    StreamInterrupted,
)
from helixcode.llm.manager import CallRecord, LLMManager, ManagedStream, ProviderEntry
from helixcode.llm.policy import Requirements
from helixcode.llm.registry import build_manager, build_provider
from helixcode.llm.types import (
    ChatRequest,
    ChatResponse,
    Deadlines,
    Done,
    HealthStatus,
    Message,
    ModelCapabilities,
    ModelInfo,
    NamedTool,
    ResponseSchema,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)

__all__ = [
    "CallRecord",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "ContextLengthExceeded",
    "Deadlines",
    "Done",
    "FinalError",
    "HealthStatus",
    "LLMError",
    "LLMManager",
    "ManagedStream",
    "Message",
    "ModelCapabilities",
    "ModelInfo",
    "NamedTool",
    "NoCandidate",
    "Provider",
    "ProviderEntry",
    "Requirements",
    "ResponseSchema",
    "RetryableError",
    "StreamEvent",
    "StreamInterrupted",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallDone",
    "Usage",
    "UsageEvent",
    "build_manager",
    "build_provider",
    "collect",
]
