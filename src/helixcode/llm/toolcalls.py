"""Accumulate streamed tool-call fragments into whole calls, robust to what real servers send.

Servers disagree on the wire, so the rules are deliberately forgiving:

- fragments are keyed by ``index``, but a *different non-empty id* at a used index starts a new call
  (Ollama's OpenAI endpoint gives every parallel call index 0);
- ``id`` and ``name`` are set once and never concatenated (llama.cpp servers repeat them on every chunk);
- ``arguments`` are appended and parsed as JSON only in :meth:`ToolCallAccumulator.finish`, whatever the
  finish reason says (a call cut by ``max_tokens`` can still report ``tool_calls``).

    acc = ToolCallAccumulator()
    acc.add(0, id="call_1", name="get", arguments='{"q": ')
    acc.add(0, arguments='"x"}')
    [call] = acc.finish()          # ToolCall(id="call_1", name="get", arguments={"q": "x"})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from helixcode.llm.types import ToolCall, ToolCallDelta

__all__ = ["ToolCallAccumulator", "parse_arguments"]


@dataclass(slots=True)
class _Slot:
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


class ToolCallAccumulator:
    """Pure state: feed fragments with :meth:`add`, collect calls with :meth:`finish`."""

    def __init__(self) -> None:
        self._slots: list[_Slot] = []
        self._by_index: dict[int, int] = {}
        self._last_index: int | None = None

    def __bool__(self) -> bool:
        return bool(self._slots)

    def add(
        self,
        index: int | None,
        *,
        id: str | None = None,
        name: str | None = None,
        arguments: str | None = None,
    ) -> ToolCallDelta:
        """Record one fragment; returns the normalised delta (index = position of the call in the reply)."""
        key = index if index is not None else (self._last_index if self._last_index is not None else 0)
        self._last_index = key
        pos = self._by_index.get(key)
        if pos is None or (id and self._slots[pos].id and id != self._slots[pos].id):
            self._slots.append(_Slot())
            pos = self._by_index[key] = len(self._slots) - 1
        slot = self._slots[pos]
        new_id = id if id and not slot.id else None
        new_name = name if name and not slot.name else None
        if new_id:
            slot.id = new_id
        if new_name:
            slot.name = new_name
        if arguments:
            slot.parts.append(arguments)
        return ToolCallDelta(index=pos, id=new_id, name=new_name, arguments=arguments or "")

    def add_whole(self, *, id: str | None, name: str, arguments: Any) -> ToolCallDelta:
        """Record a call that arrived complete (Ollama native: arguments as an object, not a string)."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self._slots.append(_Slot(id=id or "", name=name, parts=[raw]))
        self._last_index = None
        return ToolCallDelta(index=len(self._slots) - 1, id=id, name=name, arguments=raw)

    def finish(self) -> list[ToolCall]:
        """The calls so far, arguments parsed; an id is invented where the server sent none."""
        calls = []
        for pos, slot in enumerate(self._slots):
            raw = "".join(slot.parts)
            args, error = parse_arguments(raw)
            calls.append(
                ToolCall(
                    id=slot.id or f"call_{pos}",
                    name=slot.name,
                    arguments=args,
                    raw_arguments=raw,
                    error=error,
                )
            )
        return calls


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """Arguments as a dict, or ``({}, why)`` when they are not a JSON object (e.g. cut by a token limit)."""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return {}, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, f"arguments are JSON {type(value).__name__}, not an object"
    return value, None
