"""The readable parts of an attempt's output, and their tails: what `helix logs` prints and the web
dashboard shows for a task, from the same rules.

    tail_lines("1\n2\n3\n", 2)                      # '... (1 earlier lines)\n2\n3'
    output_sections({"stdout": "ok\n", "stderr": ""})  # [('stdout', 'ok\n')]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["output_sections", "tail_lines"]


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``, saying how many were left out."""
    kept = text.rstrip("\n").splitlines()
    if len(kept) <= lines:
        return "\n".join(kept)
    return f"... ({len(kept) - lines} earlier lines)\n" + "\n".join(kept[-lines:])


def output_sections(output: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The readable parts of an attempt's output, as (label, text): a shell task's stdout and stderr;
    an agent or test task's summary and its tests' output; merge conflicts. Empty parts are left out."""
    sections: list[tuple[str, str]] = []
    if summary := output.get("summary"):
        sections.append(("summary", str(summary)))
    for stream in ("stdout", "stderr"):
        if text := output.get(stream):
            sections.append((stream, str(text)))
    tests = output.get("tests")
    if isinstance(tests, Mapping) and (text := tests.get("output")):
        sections.append((f"tests: {tests.get('command') or ''}".rstrip(": "), str(text)))
    if conflicts := output.get("conflicts"):
        sections.append(("conflicts", "\n".join(map(str, conflicts))))
    return sections
