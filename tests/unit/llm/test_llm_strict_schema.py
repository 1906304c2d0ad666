"""OpenAI strict mode: the plan schema rewritten into the documented subset, and the rules checked.

The rules are OpenAI's "Structured model outputs" guide, section "Supported schemas": the types and
keywords listed there, a root object that is not ``anyOf``, ``additionalProperties: false`` and every
property ``required`` on every object, and the size limits. They are written out again here, apart from
the module's own tables, so a slip in one is caught by the other.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import pytest

from helixcode.agent.planning import plan_schema, validate_plan
from helixcode.llm.openai_compat import build_payload, response_format
from helixcode.llm.strict_schema import strict_violations, to_strict
from helixcode.llm.types import ChatRequest, Message, ResponseSchema

DOCUMENTED = {
    # structure and types: string, number, boolean, integer, object, array, enum, anyOf
    "type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
    "$ref", "$defs", "description", "title",
    # string: pattern, format; number: multipleOf, maximum, exclusiveMaximum, minimum, exclusiveMinimum;
    # array: minItems, maxItems
    "pattern", "format", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "minItems", "maxItems",
}  # fmt: skip
TYPES = {"string", "number", "boolean", "integer", "object", "array", "null"}


def subschemas(node: Any) -> Iterator[Any]:
    yield node
    if not isinstance(node, Mapping):
        return
    for sub in (node.get("properties") or {}).values():
        yield from subschemas(sub)
    for sub in (node.get("$defs") or {}).values():
        yield from subschemas(sub)
    for sub in node.get("anyOf") or ():
        yield from subschemas(sub)
    if "items" in node:
        yield from subschemas(node["items"])


@pytest.mark.parametrize("n", [1, 2, 3, 6, 8, 20])
def test_the_converted_plan_schema_follows_the_documented_rules(n: int) -> None:
    strict = to_strict(plan_schema(n))
    assert strict is not None
    assert strict["type"] == "object"
    assert "anyOf" not in strict
    objects = 0
    for node in subschemas(strict):
        assert isinstance(node, Mapping), node  # no boolean schemas (items: false)
        assert node.keys() <= DOCUMENTED, node.keys() - DOCUMENTED
        kinds = node.get("type", [])
        assert set(kinds if isinstance(kinds, list) else [kinds]) <= TYPES
        if node.get("type") == "object":
            objects += 1
            assert node["additionalProperties"] is False
            assert node["required"] == list(node["properties"])
        if node.get("type") == "array":
            assert isinstance(node["items"], Mapping)
    assert objects == 2  # the plan and its subtask
    assert strict_violations(strict) == []


def test_the_original_plan_schema_breaks_them() -> None:
    faults = strict_violations(plan_schema(3))
    assert any("'prefixItems' is not supported" in f for f in faults)
    assert any("boolean schema" in f for f in faults)
    assert any("'maxLength' is not supported" in f for f in faults)


def reply(*subtasks: dict[str, Any]) -> dict[str, Any]:
    return {"subtasks": list(subtasks)}


NULLS = {"priority": None, "criticality": None, "requires": None, "check": None, "files": None}


def sub(i: int, deps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out = {"id": f"t{i}", "type": "building", "title": f"step {i}", "description": "do it"}
    return {**out, **({} if deps is None and i == 1 else {"depends_on": deps or []}), **extra}


def test_the_converted_schema_accepts_every_plan_the_original_does() -> None:
    """The rewrite only loosens: a plan valid before is valid after (with its optional fields null,
    as strict mode writes them), and the planner still reads it."""
    original, strict = plan_schema(3), to_strict(plan_schema(3))
    assert strict is not None
    plans = [
        reply(sub(1)),
        reply(sub(1), sub(2, ["t1"])),
        reply(sub(1, priority="high"), sub(2, []), sub(3, ["t1", "t2"], files=["a.py"], check="make test")),
    ]
    for plan in plans:
        jsonschema.validate(plan, original)
        filled = reply(*({**NULLS, "depends_on": None, **s} for s in plan["subtasks"]))
        jsonschema.validate(filled, strict)
        assert [s.id for s in validate_plan(json.dumps(filled), 3)] == [s["id"] for s in plan["subtasks"]]


def test_the_converted_schema_still_refuses_what_it_can() -> None:
    strict = to_strict(plan_schema(2))
    assert strict is not None
    full = {**NULLS, **sub(1), "depends_on": None}
    for bad in (
        reply(),  # minItems
        reply(full, full, full),  # maxItems from the tuple's length
        reply({**full, "extra": 1}),  # additionalProperties
        reply({k: v for k, v in full.items() if k != "priority"}),  # every property required
        reply({**full, "type": "planning"}),  # enum
        reply({**full, "id": "t9"}),  # ids of the positions only
        reply({**full, "depends_on": ["t2"]}),  # only ids a later position may depend on
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, strict)


def test_optional_properties_become_nullable_and_nothing_else_changes() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 5, "default": "x"},
            "age": {"type": "integer", "minimum": 0},
            "tag": {"type": ["string", "null"]},
            "mode": {"enum": ["a", "b"]},
        },
        "required": ["name"],
    }
    before = copy.deepcopy(schema)
    strict = to_strict(schema)
    assert schema == before  # the caller's schema is not touched
    assert strict == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
            "tag": {"type": ["string", "null"]},  # already nullable
            "mode": {"anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]},
        },
        "required": ["name", "age", "tag", "mode"],
        "additionalProperties": False,
    }


def test_definitions_references_and_one_of() -> None:
    schema = {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "result": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        },
        "required": ["steps", "result"],
        "$defs": {"step": {"type": "object", "properties": {"say": {"type": "string"}}}},
    }
    strict = to_strict(schema)
    assert strict is not None
    assert strict["properties"]["steps"]["items"] == {"$ref": "#/$defs/step"}
    assert strict["properties"]["result"] == {"anyOf": [{"type": "string"}, {"type": "number"}]}
    assert strict["$defs"]["step"] == {
        "type": "object",
        "properties": {"say": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["say"],
        "additionalProperties": False,
    }
    assert strict_violations(strict) == []


def test_tuples_join_their_positions() -> None:
    def wrap(array: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": {"a": array}, "required": ["a"]}

    pair = to_strict(wrap({"type": "array", "prefixItems": [{"const": 1}, {"const": 2}], "items": False}))
    assert pair is not None
    assert pair["properties"]["a"] == {
        "type": "array",
        "maxItems": 2,
        "items": {"type": "integer", "enum": [1, 2]},
    }
    mixed = to_strict(
        wrap({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False})
    )
    assert mixed is not None
    assert mixed["properties"]["a"]["items"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    tail = to_strict(
        wrap({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "string"}})
    )
    assert tail is not None
    assert tail["properties"]["a"] == {"type": "array", "items": {"type": "string"}}
    # without "items", anything may follow the positions: strict mode cannot say that
    assert to_strict(wrap({"type": "array", "prefixItems": [{"type": "string"}]})) is None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}},
        {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
        {"type": "object", "properties": {"a": {"if": {}, "then": {}, "else": {}}}},
        {"type": "object", "properties": {"a": True}},
        {"type": "object", "properties": {"a": {}}},  # anything
        {"type": "object", "properties": {"a": {"type": "object"}}},  # free-form object
        {"type": "object", "properties": {"a": {"type": "array"}}},  # items unknown
        {"type": "object"},
        {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]},  # root anyOf
        {"type": "array", "items": {"type": "string"}},  # root not an object
        {"type": "object", "properties": {"a": {"enum": [f"v{i}" for i in range(1001)]}}},  # enum limit
    ],
)
def test_what_strict_mode_cannot_say_is_refused(schema: dict[str, Any]) -> None:
    assert to_strict(schema) is None


def test_nesting_and_size_limits() -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(11):
        node = {"type": "object", "properties": {"x": node}, "required": ["x"], "additionalProperties": False}
    assert any("levels of nesting" in f for f in strict_violations(node))
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string"} for i in range(5001)},
        "required": [f"p{i}" for i in range(5001)],
        "additionalProperties": False,
    }
    assert any("object properties" in f for f in strict_violations(wide))
    long = {
        "type": "object",
        "properties": {"x": {"type": "string", "enum": ["v" * 60_001, "w" * 60_000]}},
        "required": ["x"],
        "additionalProperties": False,
    }
    assert any("characters" in f for f in strict_violations(long))


def test_violations_name_the_place() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "format": "uri"},
            "b": {"type": "object", "properties": {"c": {"type": "date"}}, "required": ["c", "d"]},
            "e": {"type": "array", "items": True},
            "f": {"$ref": "https://example.com/s.json"},
        },
        "required": ["a", "b"],
        "additionalProperties": True,
    }
    assert strict_violations(bad) == [
        "#: additionalProperties must be false",
        "#: every property must be required (missing: e, f)",
        "#/properties/a: format 'uri' is not supported",
        "#/properties/b: additionalProperties must be false",
        "#/properties/b: required names unknown properties: d",
        "#/properties/b/properties/c: type 'date' is not supported",
        "#/properties/e: items must be a schema",
        "#/properties/e/items: a boolean schema",
        "#/properties/f: only local references ('#...') are supported",
    ]


SCHEMA = ResponseSchema(plan_schema(2), name="plan")
REQUEST = ChatRequest([Message.user("plan")], response_schema=SCHEMA)


def test_strict_servers_get_the_rewritten_schema() -> None:
    body = build_payload(REQUEST, "gpt-4o-mini", stream=False, strict_mode=True)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": to_strict(plan_schema(2)), "strict": True},
    }


def test_other_servers_get_the_schema_unchanged() -> None:
    body = build_payload(REQUEST, "qwen", stream=False)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": plan_schema(2), "strict": True},
    }


def test_a_schema_without_a_strict_form_goes_without_strict() -> None:
    loose = ResponseSchema({"type": "object", "properties": {"any": {}}}, name="loose")
    assert response_format(loose, strict_mode=True)["json_schema"] == {
        "name": "loose",
        "schema": {"type": "object", "properties": {"any": {}}},
        "strict": False,
    }
    relaxed = ResponseSchema(plan_schema(2), name="plan", strict=False)
    assert response_format(relaxed, strict_mode=True)["json_schema"]["strict"] is False
    assert response_format(relaxed, strict_mode=True)["json_schema"]["schema"] == plan_schema(2)
