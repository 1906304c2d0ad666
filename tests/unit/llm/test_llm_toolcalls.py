"""Tool-call accumulation across the fragment shapes real servers send."""

from __future__ import annotations

from helixcode.llm.toolcalls import ToolCallAccumulator, parse_arguments


def test_fragments_by_index_are_joined() -> None:
    acc = ToolCallAccumulator()
    acc.add(0, id="call_1", name="get", arguments='{"q": ')
    acc.add(0, arguments='"x"}')
    [call] = acc.finish()
    assert (call.id, call.name, call.arguments, call.error) == ("call_1", "get", {"q": "x"}, None)


def test_repeated_id_and_name_are_set_once() -> None:
    acc = ToolCallAccumulator()
    for part in ('{"a"', ": 1", "}"):
        acc.add(0, id="call_1", name="f", arguments=part)
    [call] = acc.finish()
    assert call.name == "f"
    assert call.id == "call_1"
    assert call.arguments == {"a": 1}


def test_new_id_at_a_used_index_starts_a_new_call() -> None:
    acc = ToolCallAccumulator()
    d1 = acc.add(0, id="a", name="f", arguments='{"x": 1}')
    d2 = acc.add(0, id="b", name="f", arguments='{"x": 2}')
    assert (d1.index, d2.index) == (0, 1)
    assert [c.arguments["x"] for c in acc.finish()] == [1, 2]


def test_parallel_calls_by_index_interleaved() -> None:
    acc = ToolCallAccumulator()
    acc.add(0, id="a", name="f", arguments="{")
    acc.add(1, id="b", name="g", arguments="{")
    acc.add(0, arguments='"k": 0}')
    acc.add(1, arguments='"k": 1}')
    calls = acc.finish()
    assert [(c.name, c.arguments) for c in calls] == [("f", {"k": 0}), ("g", {"k": 1})]


def test_missing_index_continues_the_last_call_and_ids_are_invented() -> None:
    acc = ToolCallAccumulator()
    acc.add(None, name="f", arguments='{"a":')
    acc.add(None, arguments="2}")
    [call] = acc.finish()
    assert call.id == "call_0"
    assert call.arguments == {"a": 2}


def test_delta_reports_only_new_id_and_name() -> None:
    acc = ToolCallAccumulator()
    first = acc.add(0, id="a", name="f", arguments="")
    again = acc.add(0, id="a", name="f", arguments="{}")
    assert (first.id, first.name) == ("a", "f")
    assert (again.id, again.name) == (None, None)


def test_truncated_and_non_object_arguments() -> None:
    assert parse_arguments('{"a": ')[1] is not None
    assert parse_arguments("[1]")[1] == "arguments are JSON list, not an object"
    assert parse_arguments("") == ({}, None)


def test_whole_calls_with_object_arguments() -> None:
    acc = ToolCallAccumulator()
    acc.add_whole(id=None, name="f", arguments={"a": 1})
    acc.add_whole(id="x", name="g", arguments='{"b": 2}')
    calls = acc.finish()
    assert [(c.id, c.arguments) for c in calls] == [("call_0", {"a": 1}), ("x", {"b": 2})]
    assert bool(acc)
    assert not ToolCallAccumulator()
