"""Where the dashboard draws each task of a job: a layered DAG layout, computed once on the server.

Pure (no I/O), so that it is tested without a browser and the browser only paints rectangles: a
canvas draws 5,000 of them in milliseconds, while laying them out in JavaScript on each load would
cost far more and be untestable from Python.

- Layers are columns, left to right: a task sits one column right of its deepest dependency
  (longest-path layering), so every arrow points right.
- Within a column, tasks are ordered by a few barycentre sweeps (each moves towards the mean
  position of its neighbours in the other columns), which untangles most crossings.
- Split parents and planned subtasks are groups under their parent. A closed group is one box that
  stands for all its members; an open one is a frame around its children, laid out on their own.
  Above ``COLLAPSE_ABOVE`` tasks every group starts closed (a 5,000-task job is then a few hundred
  boxes); the browser asks again with ``open`` naming the groups a person opened.
- A column of more than ``WRAP`` boxes wraps into several, about as wide in all as it is tall, so a
  flat job of 5,000 independent tasks is a square block rather than a strip 200,000 pixels long.

    >>> boxes = layout([GraphTask("a", ()), GraphTask("b", ("a",))]).boxes
    >>> [(b.key, b.x > 0) for b in boxes]
    [('a', False), ('b', True)]
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["COLLAPSE_ABOVE", "Box", "GraphTask", "Layout", "layout"]

#: Jobs with more tasks than this open with every group closed.
COLLAPSE_ABOVE = 200
#: Boxes per column before a layer wraps into another column.
WRAP = 40
TASK_W, TASK_H = 160.0, 34.0
GROUP_W, GROUP_H = 180.0, 46.0
GAP_X, GAP_Y, WRAP_GAP = 56.0, 12.0, 24.0
PAD, HEADER = 12.0, 26.0
SWEEPS = 4

Kind = Literal["task", "group", "frame"]


@dataclass(frozen=True, slots=True)
class GraphTask:
    """What the layout needs of a task: its key, the keys it depends on, its parent's key."""

    key: str
    deps: tuple[str, ...]
    parent: str | None = None


@dataclass(slots=True)
class Box:
    """A drawn rectangle: a task, a closed group (``members`` tasks inside), or an open group's frame."""

    key: str
    kind: Kind
    x: float = 0.0
    y: float = 0.0
    w: float = TASK_W
    h: float = TASK_H
    members: int = 0


@dataclass(slots=True)
class Layout:
    """Boxes (frames before what they contain, so painting in order is correct), arrows between box
    indexes (from the dependency to its dependent), and the box that shows each task."""

    boxes: list[Box] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    owner: dict[str, int] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0
    groups: int = 0


def layout(tasks: Sequence[GraphTask], open_groups: Collection[str] | None = None) -> Layout:
    """Lay out a job's tasks. ``open_groups``: the groups drawn open; ``None`` opens them all when the
    job has at most ``COLLAPSE_ABOVE`` tasks, none otherwise."""
    graph = _Graph(tasks)
    if open_groups is None:
        opened = set(graph.children) if len(tasks) <= COLLAPSE_ABOVE else set()
    else:
        opened = {k for k in open_groups if k in graph.children}
    out = Layout(groups=len(graph.children))
    placed = _place_scope(graph, None, opened, _scope_edges(graph, opened))
    _emit(placed, 0.0, 0.0, out)
    out.width, out.height = placed.w, placed.h
    for t in tasks:
        out.owner[t.key] = out.owner.get(graph.visible(t.key, opened), 0)
    seen: set[tuple[int, int]] = set()
    for t in tasks:
        for dep in t.deps:
            if dep not in graph.parent:
                continue
            pair = (out.owner[dep], out.owner[t.key])
            if pair[0] != pair[1] and pair not in seen:
                seen.add(pair)
                out.edges.append(pair)
    return out


class _Graph:
    """The tasks indexed: parents, children in input order, dependencies, each key's ancestors."""

    def __init__(self, tasks: Sequence[GraphTask]) -> None:
        self.order = [t.key for t in tasks]
        self.deps = {t.key: t.deps for t in tasks}
        known = set(self.order)
        self.parent = {t.key: (t.parent if t.parent in known and t.parent != t.key else None) for t in tasks}
        self.children: dict[str, list[str]] = {}
        for key in self.order:
            if (p := self.parent[key]) is not None:
                self.children.setdefault(p, []).append(key)
        self._paths: dict[str, tuple[str, ...]] = {}

    def path(self, key: str) -> tuple[str, ...]:
        """The key's ancestors from the top down, then the key itself."""
        if (found := self._paths.get(key)) is not None:
            return found
        chain = [key]
        seen = {key}
        while (p := self.parent[chain[-1]]) is not None and p not in seen:  # a cycle of parents ends here
            chain.append(p)
            seen.add(p)
        path = tuple(reversed(chain))
        self._paths[key] = path
        return path

    def visible(self, key: str, opened: set[str]) -> str:
        """The box that shows ``key``: its highest closed ancestor, else itself."""
        for ancestor in self.path(key)[:-1]:
            if ancestor not in opened:
                return ancestor
        return key

    def members(self, key: str) -> int:
        return sum(1 + self.members(c) for c in self.children.get(key, ()))


def _scope_edges(graph: _Graph, opened: set[str]) -> dict[str | None, set[tuple[str, str]]]:
    """Each dependency once, in the innermost open scope holding both ends, as the pair of that
    scope's members that contain them (what the scope's own layering must respect)."""
    edges: dict[str | None, set[tuple[str, str]]] = {}
    for key in graph.order:
        to = graph.path(key)
        for dep in graph.deps[key]:
            if dep not in graph.parent:
                continue
            frm = graph.path(dep)
            i = 0
            while i < min(len(frm), len(to)) and frm[i] == to[i]:
                i += 1
            if i >= len(frm) or i >= len(to):
                continue  # a task that depends on its own ancestor or descendant: nothing to draw
            scope = to[i - 1] if i else None
            if scope is None or all(a in opened for a in to[:i]):
                edges.setdefault(scope, set()).add((frm[i], to[i]))
    return edges


@dataclass(slots=True)
class _Placed:
    """A scope laid out: each member's box relative to the scope, and inner scopes of open groups."""

    w: float
    h: float
    items: list[tuple[Box, _Placed | None]]


def _place_scope(
    graph: _Graph, scope: str | None, opened: set[str], edges: dict[str | None, set[tuple[str, str]]]
) -> _Placed:
    members = [k for k in graph.order if graph.parent[k] is None] if scope is None else graph.children[scope]
    inner: dict[str, _Placed] = {}
    boxes: dict[str, Box] = {}
    for key in members:
        if key in graph.children and key in opened:
            inner[key] = _place_scope(graph, key, opened, edges)
            boxes[key] = Box(key, "frame", w=inner[key].w + 2 * PAD, h=inner[key].h + HEADER + PAD)
        elif key in graph.children:
            boxes[key] = Box(key, "group", w=GROUP_W, h=GROUP_H, members=graph.members(key))
        else:
            boxes[key] = Box(key, "task")
    columns = _order(members, edges.get(scope, set()))
    w, h = _coordinates([[boxes[k] for k in col] for col in columns])
    return _Placed(w, h, [(boxes[k], inner.get(k)) for col in columns for k in col])


def _layers(members: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering (Kahn's order). Edges are ``(dependency, dependent)``; a cycle (possible
    only where closed groups merge tasks) is broken by placing its members after what is known."""
    preds: dict[str, list[str]] = {k: [] for k in members}
    succs: dict[str, list[str]] = {k: [] for k in members}
    for a, b in edges:
        if a in preds and b in preds:
            preds[b].append(a)
            succs[a].append(b)
    waiting = {k: len(preds[k]) for k in members}
    layer: dict[str, int] = {}
    queue = [k for k in members if waiting[k] == 0]
    while True:
        while queue:
            key = queue.pop()
            layer[key] = max((layer[p] + 1 for p in preds[key] if p in layer), default=0)
            for s in succs[key]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    queue.append(s)
        left = [k for k in members if k not in layer]
        if not left:
            return layer
        queue = [left[0]]
        waiting[left[0]] = 0


def _order(members: Sequence[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Members in columns by layer, each column ordered by barycentre sweeps."""
    layer = _layers(members, edges)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for key in members:
        columns[layer[key]].append(key)
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in edges:
        if a in layer and b in layer and layer[a] < layer[b]:
            preds.setdefault(b, []).append(a)
            succs.setdefault(a, []).append(b)
    pos = {k: i / max(1, len(col)) for col in columns for i, k in enumerate(col)}
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        neighbours = preds if forward else succs
        for col in columns if forward else reversed(columns):
            bary = {k: _mean([pos[n] for n in neighbours.get(k, ())], pos[k]) for k in col}
            col.sort(key=lambda k: bary[k])
            for i, k in enumerate(col):
                pos[k] = i / max(1, len(col))
    return columns


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _coordinates(columns: list[list[Box]]) -> tuple[float, float]:
    """Columns left to right, boxes stacked and centred in each; a long column wraps. Returns the
    scope's size; the boxes get coordinates relative to it."""
    blocks: list[tuple[float, list[list[Box]]]] = []  # (width, sub-columns) per layer
    for col in columns:
        per = max(WRAP, math.ceil(math.sqrt(len(col) * (TASK_W + WRAP_GAP) / (TASK_H + GAP_Y))))
        per = math.ceil(len(col) / max(1, math.ceil(len(col) / per)))  # even parts: 50 is 25 + 25
        parts = [col[i : i + per] for i in range(0, len(col), per)] or [[]]
        width = sum(max((b.w for b in p), default=0.0) for p in parts) + WRAP_GAP * (len(parts) - 1)
        blocks.append((width, parts))
    heights = [sum(b.h for b in p) + GAP_Y * max(0, len(p) - 1) for _, parts in blocks for p in parts]
    total_h = max(heights, default=0.0)
    x = 0.0
    for width, parts in blocks:
        sub_x = x
        for part in parts:
            part_h = sum(b.h for b in part) + GAP_Y * max(0, len(part) - 1)
            y = (total_h - part_h) / 2
            part_w = max((b.w for b in part), default=0.0)
            for b in part:
                b.x, b.y = sub_x + (part_w - b.w) / 2, y
                y += b.h + GAP_Y
            sub_x += part_w + WRAP_GAP
        x += width + GAP_X
    return max(0.0, x - GAP_X), total_h


def _emit(placed: _Placed, dx: float, dy: float, out: Layout) -> None:
    """Absolute coordinates, frames before their contents; each box's index goes in ``owner``."""
    for box, inner in placed.items:
        box.x = math.floor(box.x + dx)
        box.y = math.floor(box.y + dy)
        out.owner[box.key] = len(out.boxes)
        out.boxes.append(box)
        if inner is not None:
            _emit(inner, box.x + PAD, box.y + HEADER, out)
