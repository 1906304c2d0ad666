"""A job's task graph as text for docs and CI logs: Mermaid, Graphviz dot, or JSON (`helix graph`).

``TaskGraph.of(tasks)`` keeps what a picture needs: one node per task (key, title, type, status,
progress, parent) and one edge per dependency, drawn from the dependency to its dependent (the order
work flows in). A task with children (a split parent, a planner and its planned subtasks) is drawn
with them in one group (Mermaid ``subgraph``, dot ``subgraph cluster_...``), nested as deep as the
tasks are; each node is coloured by its status. Pure text in, text out::

    print(to_mermaid(TaskGraph.of(tasks)))
    # flowchart LR
    #   t_build["build<br/>Build the library<br/>succeeded"]:::succeeded
    #   ...
    #   t_build --> t_test

Node ids are ``t_`` and the key with anything but letters, digits and ``_`` turned into ``_`` (a
suffix keeps them unique), so no key can collide with Mermaid's keywords (``end``) or dot's syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Task

__all__ = [
    "FORMATS",
    "STATUS_COLOURS",
    "Edge",
    "Node",
    "TaskGraph",
    "render",
    "to_dot",
    "to_json",
    "to_mermaid",
]

#: Fill and text colour per status (the same hues as the terminal's status styles).
STATUS_COLOURS: dict[TaskStatus, tuple[str, str]] = {
    TaskStatus.BLOCKED: ("#e5e7eb", "#374151"),
    TaskStatus.READY: ("#cffafe", "#155e75"),
    TaskStatus.RUNNING: ("#bfdbfe", "#1e3a8a"),
    TaskStatus.RETRYING: ("#fef08a", "#713f12"),
    TaskStatus.WAITING: ("#dbeafe", "#1e40af"),
    TaskStatus.PAUSED: ("#f5d0fe", "#701a75"),
    TaskStatus.SUCCEEDED: ("#bbf7d0", "#14532d"),
    TaskStatus.FAILED: ("#fca5a5", "#7f1d1d"),
    TaskStatus.UPSTREAM_FAILED: ("#fecaca", "#991b1b"),
    TaskStatus.CANCELLED: ("#f3f4f6", "#991b1b"),
    TaskStatus.SKIPPED: ("#dcfce7", "#166534"),
}


@dataclass(frozen=True, slots=True)
class Node:
    key: str
    title: str
    type: str
    status: TaskStatus
    progress: float = 0.0
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    """``dependent`` waits for ``dependency``: drawn ``dependency --> dependent``."""

    dependency: str
    dependent: str


@dataclass(frozen=True, slots=True)
class TaskGraph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    job: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, tasks: Iterable[Task], job: Mapping[str, Any] | None = None) -> TaskGraph:
        """The graph of ``tasks`` (a job's, in creation order); dependencies and parents outside them
        are left out. ``job``: what to say about the job (id, name, status) in the output."""
        found = list(tasks)
        keys = {t.key for t in found}
        nodes = tuple(
            Node(
                key=t.key,
                title=t.title,
                type=t.type.value,
                status=t.status,
                progress=round(1.0 if t.status.satisfies_dependents else t.progress, 4),
                parent=t.parent_key if t.parent_key in keys else None,
            )
            for t in found
        )
        edges = tuple(Edge(dep, t.key) for t in found for dep in t.depends_on if dep in keys)
        return cls(nodes, edges, dict(job or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "nodes": [{**asdict(n), "status": n.status.value} for n in self.nodes],
            "edges": [asdict(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskGraph:
        """The graph ``to_dict`` (or ``helix graph --format json``) described."""
        return cls(
            tuple(Node(**{**n, "status": TaskStatus(n["status"])}) for n in data["nodes"]),
            tuple(Edge(**e) for e in data["edges"]),
            dict(data.get("job") or {}),
        )

    def children(self) -> dict[str | None, list[Node]]:
        """Nodes by parent (``None``: the top level), in order."""
        out: dict[str | None, list[Node]] = {}
        for n in self.nodes:
            out.setdefault(n.parent, []).append(n)
        return out


def _ids(graph: TaskGraph) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for n in graph.nodes:
        base = "t_" + re.sub(r"\W", "_", n.key, flags=re.ASCII)
        chosen, i = base, 1
        while chosen in used:
            i += 1
            chosen = f"{base}_{i}"
        used.add(chosen)
        ids[n.key] = chosen
    return ids


def _one_line(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _status_label(n: Node) -> str:
    if n.status is TaskStatus.RUNNING and n.progress:
        return f"{n.status.value} {n.progress:.0%}"
    return n.status.value


def _job_line(graph: TaskGraph) -> str | None:
    job = graph.job
    if not job:
        return None
    return " ".join(str(job[k]) for k in ("id", "status", "name") if job.get(k))


# -- Mermaid ------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: its own entity codes for quotes and angle brackets."""
    return text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(graph: TaskGraph, direction: str = "LR") -> str:
    """A Mermaid ``flowchart``: a node per task, a ``subgraph`` per parent, a ``classDef`` per status."""
    ids = _ids(graph)
    by_parent = graph.children()
    lines = [f"flowchart {direction}"]
    if (job := _job_line(graph)) is not None:
        lines.append(f"  %% job {_one_line(job)}")

    def node(n: Node, indent: str) -> str:
        label = "<br/>".join(_mermaid_text(s) for s in (n.key, _one_line(n.title), _status_label(n)))
        return f'{indent}{ids[n.key]}["{label}"]:::{n.status.value}'

    def group(parent: str | None, depth: int) -> None:
        indent = "  " * (depth + 1)
        for n in by_parent.get(parent, []):
            if n.key in by_parent:
                lines.append(f'{indent}subgraph g_{ids[n.key]}["{_mermaid_text(n.key)}"]')
                lines.append(node(n, indent + "  "))
                group(n.key, depth + 1)
                lines.append(f"{indent}end")
            else:
                lines.append(node(n, indent))

    group(None, 0)
    lines += [f"  {ids[e.dependency]} --> {ids[e.dependent]}" for e in graph.edges]
    used = sorted({n.status for n in graph.nodes}, key=list(TaskStatus).index)
    for status in used:
        fill, ink = STATUS_COLOURS[status]
        lines.append(f"  classDef {status.value} fill:{fill},stroke:{ink},color:{ink}")
    return "\n".join(lines) + "\n"


# -- Graphviz dot -------------------------------------------------------------------------------


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(graph: TaskGraph, direction: str = "LR") -> str:
    """A Graphviz ``digraph``: a filled box per task, a ``cluster`` per parent."""
    ids = _ids(graph)
    by_parent = graph.children()
    name = _dot_text(_one_line(_job_line(graph) or "job"))
    lines = [
        "digraph job {",
        f'  label="{name}"; labelloc=t; rankdir={direction};',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]

    def node(n: Node, indent: str) -> str:
        fill, ink = STATUS_COLOURS[n.status]
        label = "\\n".join(_dot_text(s) for s in (n.key, _one_line(n.title), _status_label(n)))
        return (
            f'{indent}{ids[n.key]} [label="{label}", fillcolor="{fill}", color="{ink}", '
            f'fontcolor="{ink}", class="{n.status.value}"];'
        )

    def group(parent: str | None, depth: int) -> None:
        indent = "  " * (depth + 1)
        for n in by_parent.get(parent, []):
            if n.key in by_parent:
                lines.append(f"{indent}subgraph cluster_{ids[n.key]} {{")
                lines.append(f'{indent}  label="{_dot_text(n.key)}"; style=dashed;')
                lines.append(node(n, indent + "  "))
                group(n.key, depth + 1)
                lines.append(f"{indent}}}")
            else:
                lines.append(node(n, indent))

    group(None, 0)
    lines += [f"  {ids[e.dependency]} -> {ids[e.dependent]};" for e in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- JSON ---------------------------------------------------------------------------------------


def to_json(graph: TaskGraph) -> str:
    """``TaskGraph.to_dict`` as indented JSON; ``TaskGraph.from_dict(json.loads(...))`` reads it back."""
    return json.dumps(graph.to_dict(), indent=2) + "\n"


FORMATS: dict[str, Callable[[TaskGraph], str]] = {"mermaid": to_mermaid, "dot": to_dot, "json": to_json}


def render(tasks: Sequence[Task], fmt: str, job: Mapping[str, Any] | None = None) -> str:
    """``tasks`` as the named format (a key of ``FORMATS``)."""
    return FORMATS[fmt](TaskGraph.of(tasks, job))
