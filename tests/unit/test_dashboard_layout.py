"""The dashboard's graph layout: layers follow dependencies, crossings are reduced, groups close and
open, every task has a box that shows it, and 5,000 tasks lay out (how fast: the bench)."""

from __future__ import annotations

from bench.dashboard import five_thousand_tasks

from helixcode.api.dashboard.layout import COLLAPSE_ABOVE, WRAP, Box, GraphTask, Layout, layout


def task(key: str, *deps: str, parent: str | None = None) -> GraphTask:
    return GraphTask(key, deps, parent)


def boxes(placed: Layout) -> dict[str, Box]:
    return {b.key: b for b in placed.boxes}


def overlaps(a: Box, b: Box) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_every_arrow_points_right_and_boxes_do_not_overlap() -> None:
    placed = layout([task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"), task("e", "a", "d")])
    at = boxes(placed)
    for frm, to in placed.edges:
        assert placed.boxes[frm].x + placed.boxes[frm].w < placed.boxes[to].x
    assert at["a"].x == 0
    assert at["b"].x == at["c"].x < at["d"].x < at["e"].x  # e waits for d: longest path
    flat = list(at.values())
    assert not any(overlaps(p, q) for i, p in enumerate(flat) for q in flat[i + 1 :])
    assert placed.width >= at["e"].x + at["e"].w
    assert placed.height >= max(b.y + b.h for b in flat)
    assert sorted((placed.boxes[f].key, placed.boxes[t].key) for f, t in placed.edges) == [
        ("a", "b"),
        ("a", "c"),
        ("a", "e"),
        ("b", "d"),
        ("c", "d"),
        ("d", "e"),
    ]


def test_barycentre_ordering_untangles_two_chains() -> None:
    # Created crosswise: x1 feeds y2, x2 feeds y1. Ordered by their sources, the arrows do not cross.
    at = boxes(layout([task("x1"), task("x2"), task("y2", "x1"), task("y1", "x2")]))
    assert (at["x1"].y < at["x2"].y) == (at["y2"].y < at["y1"].y)


def test_small_jobs_show_groups_open_and_large_ones_closed() -> None:
    tasks = [task("p"), task("p.1", parent="p"), task("p.2", "p.1", parent="p"), task("q", "p")]
    opened = layout(tasks)
    at = boxes(opened)
    assert at["p"].kind == "frame"
    for child in ("p.1", "p.2"):  # children inside their parent's frame
        c, p = at[child], at["p"]
        assert p.x < c.x
        assert c.x + c.w < p.x + p.w
        assert p.y < c.y
        assert c.y + c.h < p.y + p.h
    assert at["p.1"].x < at["p.2"].x
    assert at["p"].x + at["p"].w < at["q"].x
    assert opened.owner == {k: opened.boxes.index(at[k]) for k in ("p", "p.1", "p.2", "q")}
    assert opened.boxes.index(at["p"]) < opened.boxes.index(at["p.1"])  # frames are painted first

    closed = layout(tasks, open_groups=())
    at = boxes(closed)
    assert set(at) == {"p", "q"}
    assert at["p"].kind == "group"
    assert at["p"].members == 2
    assert closed.owner["p.1"] == closed.owner["p.2"] == closed.owner["p"]
    assert [(closed.boxes[f].key, closed.boxes[t].key) for f, t in closed.edges] == [("p", "q")]

    many = [task(f"t{i}") for i in range(COLLAPSE_ABOVE)] + tasks
    assert boxes(layout(many))["p"].kind == "group"
    assert boxes(layout(many, open_groups=["p"]))["p"].kind == "frame"


def test_nested_groups_and_edges_into_a_closed_group() -> None:
    tasks = [
        task("a"),
        task("p", "a"),
        task("p.1", "a", parent="p"),
        task("p.1.1", "a", parent="p.1"),
        task("p.1.2", "p.1.1", parent="p.1"),
        task("z", "p.1.2"),
    ]
    inner_closed = layout(tasks, open_groups=["p"])
    at = boxes(inner_closed)
    assert (at["p"].kind, at["p.1"].kind) == ("frame", "group")
    assert inner_closed.owner["p.1.2"] == inner_closed.boxes.index(at["p.1"])
    pairs = {(inner_closed.boxes[f].key, inner_closed.boxes[t].key) for f, t in inner_closed.edges}
    assert ("p.1", "z") in pairs  # a dependency on a hidden task points at the group showing it
    all_open = boxes(layout(tasks, open_groups=["p", "p.1"]))
    assert all_open["p.1.1"].x < all_open["p.1.2"].x
    assert all_open["p"].x + all_open["p"].w < all_open["z"].x
    # Opening a group inside a closed one shows nothing more: the outer box still stands for all.
    assert boxes(layout(tasks, open_groups=["p.1"]))["p"].kind == "group"


def test_a_wide_layer_wraps_into_a_block() -> None:
    placed = layout([task(f"t{i}") for i in range(5000)])
    assert placed.width < 3 * placed.height
    assert placed.height < 3 * placed.width
    columns = {b.x for b in placed.boxes}
    assert len(columns) > 1
    assert max(sum(1 for b in placed.boxes if b.x == x) for x in columns) >= WRAP
    fifty = layout([task(f"t{i}") for i in range(50)])
    assert sorted({sum(1 for b in fifty.boxes if b.x == x) for x in {b.x for b in fifty.boxes}}) == [25]


def test_unknown_dependencies_and_parents_are_ignored() -> None:
    placed = layout([task("a", "gone"), task("b", "a", parent="nobody"), task("c", parent="c")])
    assert {b.key: b.kind for b in placed.boxes} == {"a": "task", "b": "task", "c": "task"}
    assert len(placed.edges) == 1


def test_five_thousand_tasks_in_forty_groups_lay_out_closed_and_open() -> None:
    tasks = five_thousand_tasks()  # how fast: `make bench`, measure "dashboard"
    closed = layout(tasks)
    opened = layout(tasks, open_groups=[f"t{g * 25}" for g in range(40)])
    assert len(closed.boxes) == 1000
    assert len(opened.boxes) == 5000
    assert len(closed.owner) == len(opened.owner) == 5000
