"""JSON schemas for OpenAI's strict structured outputs (``response_format.json_schema.strict: true``).

Strict mode accepts a documented subset of JSON Schema (OpenAI, "Structured model outputs", section
"Supported schemas"), and refuses a request whose schema leaves it:

- types: string, number, boolean, integer, object, array, enum, ``anyOf`` (``null`` in unions);
- keywords beyond the structure: strings ``pattern``, ``format`` (date-time, time, date, duration, email,
  hostname, ipv4, ipv6, uuid); numbers ``multipleOf``, ``maximum``, ``exclusiveMaximum``, ``minimum``,
  ``exclusiveMinimum``; arrays ``minItems``, ``maxItems``; ``$defs`` with ``$ref``, ``const``,
  ``description``, ``title``. Not supported: ``allOf``, ``not``, ``if``/``then``/``else``,
  ``dependentRequired``, ``dependentSchemas`` (and anything not listed, such as ``default``,
  ``minLength``, ``maxLength``, ``prefixItems``);
- the root is an object, not ``anyOf``; every object sets ``additionalProperties: false`` and lists every
  property in ``required`` (an optional one is emulated by a union with ``null``);
- at most 5000 object properties, 10 levels of nesting, 1000 enum values, 120,000 characters of
  property names, definition names, enum and const values.

:func:`to_strict` rewrites a schema into that subset, or says it cannot (``None``): then the caller sends
it without strict mode. The rewrite loosens where it must (dropped length limits; a tuple becomes an array
of the union of its positions), so replies are still validated by whoever asked for them; it never makes
a schema accept less. :func:`strict_violations` checks the rules above.

    to_strict({"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}}})
    # {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    #  "required": ["a"], "additionalProperties": False}
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_ENUM_VALUES",
    "MAX_PROPERTIES",
    "MAX_STRING_CHARS",
    "strict_violations",
    "to_strict",
]

TYPES = frozenset({"string", "number", "boolean", "integer", "object", "array", "null"})
FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
STRUCTURE = frozenset({"type", "properties", "required", "additionalProperties", "items", "anyOf"})
ANNOTATIONS = frozenset({"description", "title"})
VALUES = frozenset({"enum", "const"})
REFS = frozenset({"$ref", "$defs", "definitions"})
CONSTRAINTS = frozenset(
    {
        "pattern",
        "format",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "minItems",
        "maxItems",
    }
)
ALLOWED = STRUCTURE | ANNOTATIONS | VALUES | REFS | CONSTRAINTS
#: Composition strict mode cannot express; a schema using it is sent without strict mode.
UNSUPPORTED = frozenset({"allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas"})
MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000
MAX_STRING_CHARS = 120_000


class _Unsupported(Exception):
    """The schema has no strict-mode equivalent."""


def to_strict(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """``schema`` in strict mode's subset, or ``None`` when it has no equivalent there."""
    try:
        out = _convert(schema)
    except _Unsupported:
        return None
    if out.get("type") != "object" or strict_violations(out):
        return None
    return out


def _convert(node: Any) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise _Unsupported("boolean schema")  # true (anything) and false (nothing) have no equivalent
    if UNSUPPORTED & node.keys():
        raise _Unsupported(", ".join(sorted(UNSUPPORTED & node.keys())))
    node = _tuple_as_array(node)
    kind = _type_of(node)
    out: dict[str, Any] = {} if kind is None else {"type": kind}
    out.update((k, v) for k, v in node.items() if k in ANNOTATIONS | VALUES | CONSTRAINTS)
    if "$ref" in node:
        out["$ref"] = node["$ref"]
    for key in ("$defs", "definitions"):
        if key in node:
            out[key] = {name: _convert(sub) for name, sub in node[key].items()}
    if "oneOf" in node or "anyOf" in node:  # oneOf's branches are accepted by anyOf too (looser)
        out["anyOf"] = [_convert(sub) for sub in [*node.get("anyOf", ()), *node.get("oneOf", ())]]
    if "properties" in node or kind == "object":
        out.update(_strict_object(node))
    elif kind == "array" or "items" in node:
        if not isinstance(node.get("items"), Mapping):
            raise _Unsupported("an array without an item schema")
        out["items"] = _convert(node["items"])
    if not out.keys() & {"type", "anyOf", "$ref", "enum", "const"}:
        raise _Unsupported("a schema that accepts anything")
    return out


def _type_of(node: Mapping[str, Any]) -> Any:
    """The node's type; for a bare ``enum``/``const``, the JSON type all its values share."""
    if "type" in node:
        return node["type"]
    if "properties" in node:
        return "object"
    values = node.get("enum", [node["const"]] if "const" in node else None)
    kinds = {_json_type(v) for v in values or ()}
    return kinds.pop() if len(kinds) == 1 else None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "string"


def _strict_object(node: Mapping[str, Any]) -> dict[str, Any]:
    """Every property required, the optional ones nullable; no other keys."""
    props = node.get("properties") or {}
    if not props:
        raise _Unsupported("an object without properties")  # strict would force {}
    required = set(node.get("required", ()))
    out = {}
    for name, sub in props.items():
        converted = _convert(sub)
        out[name] = converted if name in required else _nullable(converted)
    return {"properties": out, "required": list(props), "additionalProperties": False}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if _accepts_null(schema):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _accepts_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return "enum" not in schema or None in schema["enum"]
    return any(_accepts_null(s) for s in schema.get("anyOf", ()))


# -- tuples ---------------------------------------------------------------------------------------------


def _tuple_as_array(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """``prefixItems`` (a tuple) as an array of the union of its positions; ``items: false`` after
    them becomes ``maxItems``. Position-specific rules are lost: the reply must be validated."""
    if "prefixItems" not in node:
        return node
    positions = list(node["prefixItems"])
    tail = node.get("items")
    out = {k: v for k, v in node.items() if k not in ("prefixItems", "items")}
    if tail is False:
        out["maxItems"] = min(len(positions), node.get("maxItems", len(positions)))
    elif isinstance(tail, Mapping):
        positions.append(tail)
    else:
        raise _Unsupported("a tuple followed by anything")
    if not positions:
        raise _Unsupported("an empty tuple")
    merged = positions[0]
    for position in positions[1:]:
        merged = _join(merged, position)
    out["items"] = merged
    out["type"] = "array"
    return out


def _join(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """A schema accepting what ``a`` or ``b`` accepts: merged field by field where they have the same
    shape (so replies keep one shape), a union otherwise."""
    if a == b:
        return dict(a)
    common = {k: v for k, v in a.items() if b.get(k) == v}
    if a.keys() & VALUES and b.keys() & VALUES:
        values: dict[str, Any] = {}
        for value in [*_values(a), *_values(b)]:
            values.setdefault(json.dumps(value, sort_keys=True), value)
        rest = {k: v for k, v in common.items() if k not in VALUES}
        return {**rest, "enum": list(values.values())}
    if _type_of(a) == _type_of(b) == "object" and "properties" in a and "properties" in b:
        pa, pb = a["properties"], b["properties"]
        names = {**pa, **pb} if len(pa) >= len(pb) else {**pb, **pa}  # the fuller one's order
        props = {
            k: _join(pa[k], pb[k]) if k in pa and k in pb else pa[k] if k in pa else pb[k] for k in names
        }
        required = [k for k in a.get("required", ()) if k in b.get("required", ())]
        keep = {k: v for k, v in common.items() if k not in ("properties", "required")}
        return {**keep, "type": "object", "properties": props, "required": required}
    if (
        _type_of(a) == _type_of(b) == "array"
        and isinstance(a.get("items"), Mapping)
        and isinstance(b.get("items"), Mapping)
    ):
        out = {k: v for k, v in common.items() if k not in ("items", "minItems", "maxItems")}
        out["items"] = _join(a["items"], b["items"])
        if "minItems" in a and "minItems" in b:
            out["minItems"] = min(a["minItems"], b["minItems"])
        if "maxItems" in a and "maxItems" in b:
            out["maxItems"] = max(a["maxItems"], b["maxItems"])
        return out
    nested = (a.keys() | b.keys()) & (STRUCTURE - {"type"})
    if "type" in a and a.get("type") == b.get("type") and not nested:
        return common  # the same scalar type: keep the constraints both share
    return {"anyOf": [*_branches(a), *_branches(b)]}


def _values(node: Mapping[str, Any]) -> list[Any]:
    return list(node["enum"]) if "enum" in node else [node["const"]]


def _branches(node: Mapping[str, Any]) -> list[Any]:
    return list(node["anyOf"]) if node.keys() == {"anyOf"} else [node]


# -- the rules, checked ------------------------------------------------------------------------------------


def strict_violations(schema: Mapping[str, Any]) -> list[str]:
    """Where ``schema`` breaks strict mode's documented rules; empty when it follows them all."""
    faults: list[str] = []
    if not isinstance(schema, Mapping) or schema.get("type") != "object" or "anyOf" in schema:
        faults.append("the root must be an object, not anyOf")
    props = enums = chars = 0
    depth = 0
    for path, node, level in _walk(schema, "#", 0):
        faults += _node_faults(path, node)
        if not isinstance(node, Mapping):
            continue
        depth = max(depth, level)
        names = list(node.get("properties") or {})
        props += len(names)
        chars += sum(map(len, names)) + sum(map(len, node.get("$defs") or {}))
        values = _values(node) if node.keys() & VALUES else []
        enums += len(node.get("enum") or ())
        chars += sum(len(v) for v in values if isinstance(v, str))
    if props > MAX_PROPERTIES:
        faults.append(f"#: {props} object properties; at most {MAX_PROPERTIES}")
    if depth > MAX_DEPTH:
        faults.append(f"#: {depth} levels of nesting; at most {MAX_DEPTH}")
    if enums > MAX_ENUM_VALUES:
        faults.append(f"#: {enums} enum values; at most {MAX_ENUM_VALUES}")
    if chars > MAX_STRING_CHARS:
        faults.append(f"#: {chars} characters of names and values; at most {MAX_STRING_CHARS}")
    return faults


def _walk(node: Any, path: str, level: int) -> Iterator[tuple[str, Any, int]]:
    """Every subschema with its path and its object nesting level (the root object is level 1)."""
    if isinstance(node, Mapping) and _type_of(node) == "object":
        level += 1
    yield path, node, level
    if not isinstance(node, Mapping):
        return
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}/properties/{name}", level)
    for key in ("$defs", "definitions"):
        for name, sub in (node.get(key) or {}).items():
            yield from _walk(sub, f"{path}/{key}/{name}", level)
    for key in ("anyOf", "prefixItems"):
        for i, sub in enumerate(node.get(key) or ()):
            yield from _walk(sub, f"{path}/{key}/{i}", level)
    if "items" in node:
        yield from _walk(node["items"], f"{path}/items", level)


def _node_faults(path: str, node: Any) -> list[str]:
    if not isinstance(node, Mapping):
        return [f"{path}: a boolean schema"]
    faults = [f"{path}: '{k}' is not supported" for k in sorted(node.keys() - ALLOWED)]
    kinds = node.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if kind not in TYPES:
            faults.append(f"{path}: type {kind!r} is not supported")
    if "format" in node and node["format"] not in FORMATS:
        faults.append(f"{path}: format {node['format']!r} is not supported")
    if "$ref" in node and not str(node["$ref"]).startswith("#"):
        faults.append(f"{path}: only local references ('#...') are supported")
    if "items" in node and not isinstance(node["items"], Mapping):
        faults.append(f"{path}: items must be a schema")
    if _type_of(node) == "array" and "items" not in node and "$ref" not in node:
        faults.append(f"{path}: an array needs an item schema")
    if _type_of(node) == "object" or "properties" in node:
        faults += _object_faults(path, node)
    return faults


def _object_faults(path: str, node: Mapping[str, Any]) -> list[str]:
    faults = []
    props = node.get("properties")
    if not isinstance(props, Mapping):
        return [f"{path}: an object needs its properties"]
    if node.get("additionalProperties") is not False:
        faults.append(f"{path}: additionalProperties must be false")
    required: Sequence[str] = node.get("required") or ()
    if missing := [k for k in props if k not in required]:
        faults.append(f"{path}: every property must be required (missing: {', '.join(missing)})")
    if unknown := [k for k in required if k not in props]:
        faults.append(f"{path}: required names unknown properties: {', '.join(unknown)}")
    return faults
