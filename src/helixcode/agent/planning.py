"""Planning: ask the model for a plan that follows a JSON schema, validate it, repair it once.

The schema goes to the provider as a response schema (constrained decoding where supported: llama.cpp
grammars, OpenAI structured outputs, Ollama ``format``); the reply is still validated like any task
graph (fields, types, duplicate ids, unknown references, cycles). An invalid plan gets one repair round:
the first prompt again, plus a short note of the faults (not the whole invalid reply, which could
overflow a small window); a second invalid plan fails the attempt with them.

Large uniform work (a subtask that lists many ``files`` and whose type is refactoring or porting) is
cut into balanced parts with the deterministic splitter, weighted by file size, before insertion.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from helixcode.domain.enums import Criticality, Priority, TaskType
from helixcode.domain.graph import validate_graph
from helixcode.domain.plan import AgentRun, TaskSpec
from helixcode.domain.splitting import choose_parts, part_description, split_balanced
from helixcode.errors import PlanError
from helixcode.llm.types import ChatRequest, ChatResponse, Message, ResponseSchema, Usage

__all__ = ["PlanResult", "ask_for_plan", "chain", "plan_schema", "split_uniform", "validate_plan"]

ChatFn = Callable[[ChatRequest], Awaitable[ChatResponse]]
SUBTASK_TYPES = [t.value for t in TaskType if t is not TaskType.PLANNING]
UNIFORM_TYPES = (TaskType.REFACTORING, TaskType.PORTING)
UNIFORM_MIN_FILES = 4
MAX_REQUIRES = 4
#: The repair note (see ``repair_note``): each fault cut to FAULT_CHARS, at most MAX_FAULTS of them and
#: FAULTS_CHARS in all, and, for a reply that is not JSON, its first EXCERPT_CHARS. Small on purpose:
#: the first prompt may nearly fill a small window, and a server may spend several tokens on a quote
#: (llama-cpp-python's chatml-function-calling template escapes quotes as HTML entities).
FAULT_CHARS = 160
MAX_FAULTS = 6
FAULTS_CHARS = 240
EXCERPT_CHARS = 80

PLANNER_PROMPT = (
    "You plan software work. Break the goal into at most {max_subtasks} subtasks, in order. Subtask i "
    "has the id t<i>, a type ({types}), a short title, a one-sentence description, and depends_on: ids "
    "of earlier subtasks that must finish first. Reply with JSON only."
)


def plan_schema(
    max_subtasks: int = 8, capabilities: Sequence[str] | None = None, *, network: bool = False
) -> dict[str, Any]:
    """The JSON schema a plan reply must follow.

    Subtask ``i`` has the id ``t<i>`` and may depend only on earlier ones (``prefixItems``, one schema
    per position), so a model under constrained decoding cannot write a cycle, a self-dependency or an
    unknown reference; the reply is validated all the same, since not every provider enforces schemas.
    ``capabilities``, when known, are all a subtask may require: a requirement no worker offers would
    leave its task unclaimable for ever.
    """
    # Lists are bounded: a small model under a grammar otherwise repeats an item until max_tokens.
    strings = {"type": "array", "items": {"type": "string"}, "maxItems": 20}
    requires: dict[str, Any] = {**strings, "maxItems": MAX_REQUIRES}
    if capabilities is not None:
        offered = sorted(set(capabilities))
        requires = {
            "type": "array",
            "items": {"type": "string", "enum": offered} if offered else {"type": "string"},
            "maxItems": min(MAX_REQUIRES, len(offered)),
        }
    positions = []
    for i in range(1, max_subtasks + 1):
        props: dict[str, Any] = {
            "id": {"const": f"t{i}"},
            "type": {"type": "string", "enum": SUBTASK_TYPES},
            "title": {"type": "string", "maxLength": 80},
            "description": {"type": "string", "maxLength": 300},
        }
        if i > 1:
            earlier = [f"t{j}" for j in range(1, i)]
            props["depends_on"] = {
                "type": "array",
                "items": {"type": "string", "enum": earlier},
                "maxItems": i - 1,
            }
        optional = {
            "priority": {"type": "string", "enum": [p.value for p in Priority]},
            "criticality": {"type": "string", "enum": [c.value for c in Criticality]},
            "requires": requires,
            "check": {"type": "string"},
            "files": strings,
        }
        if network:  # only when config lets the planner open the network (``agent.planner_network``)
            optional["network"] = {"type": "boolean"}
        positions.append(
            {
                "type": "object",
                "properties": {**props, **optional},
                "required": list(props),
                "additionalProperties": False,
            }
        )
    return {
        "type": "object",
        "properties": {
            "subtasks": {"type": "array", "prefixItems": positions, "items": False, "minItems": 1}
        },
        "required": ["subtasks"],
        "additionalProperties": False,
    }


def validate_plan(
    text: str, max_subtasks: int = 8, capabilities: Sequence[str] | None = None, *, network: bool = False
) -> list[TaskSpec]:
    """Subtask specs from a reply, or ``PlanError`` listing every fault found. With ``capabilities``,
    a subtask requiring anything else is a fault (see ``plan_schema``); so is ``network`` unless
    ``network`` allows it (a model may not open the sandbox's network unless the operator said so)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError([f"plan: not valid JSON ({exc.msg} at character {exc.pos})"]) from None
    items = data.get("subtasks") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise PlanError(["plan: expected an object with a non-empty 'subtasks' list"])
    if len(items) > max_subtasks:
        raise PlanError([f"plan: {len(items)} subtasks; at most {max_subtasks} are allowed"])
    faults: list[str] = []
    specs: list[TaskSpec] = []
    for index, item in enumerate(items):
        try:
            specs.append(_spec(item))
        except ValidationError as exc:
            label = item.get("id") if isinstance(item, dict) else None
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "subtask"
                faults.append(
                    f"subtask '{label}' (subtasks[{index}]): {where}: {err['msg']} (got {err['input']!r})"
                )
        except (TypeError, ValueError) as exc:
            faults.append(f"subtasks[{index}]: {exc}")
    if capabilities is not None:
        offered = set(capabilities)
        listed = ", ".join(sorted(offered)) or "none"
        faults += [
            f"subtask '{item.get('id')}': requires '{r}', which no worker offers (offered: {listed})"
            for item in items
            if isinstance(item, dict) and isinstance(item.get("requires"), list)
            for r in item["requires"]
            if str(r) not in offered
        ]
    if not network:
        faults += [
            f"subtask '{item.get('id')}': 'network' is not allowed here (agent.planner_network is off)"
            for item in items
            if isinstance(item, dict) and "network" in item
        ]
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.id] = seen.get(spec.id, 0) + 1
    faults += [f"subtask '{k}': id used {n} times" for k, n in seen.items() if n > 1]
    if faults:
        raise PlanError(faults)
    validate_graph({s.id: list(s.depends_on) for s in specs})
    return specs


def _spec(item: Any) -> TaskSpec:
    if not isinstance(item, dict):
        raise TypeError("each subtask must be an object")
    if item.get("type") == TaskType.PLANNING.value:
        raise ValueError(f"subtask '{item.get('id')}': type 'planning' is not allowed inside a plan")
    agent: dict[str, Any] = {}
    if check := item.get("check"):
        agent["check"] = str(check)
    if files := item.get("files"):
        agent["files"] = [str(f) for f in files]
    if item.get("network") is True:
        agent["network"] = True
    if isinstance(item.get("depends_on"), list):  # the same dependency twice means it once
        item = {**item, "depends_on": list(dict.fromkeys(map(str, item["depends_on"])))}
    fields = {
        k: item[k]
        for k in ("id", "type", "title", "description", "depends_on", "requires", "priority", "criticality")
        if item.get(k) is not None
    }
    return TaskSpec.model_validate({**fields, "run": AgentRun(agent=agent)})


@dataclass
class PlanResult:
    subtasks: list[TaskSpec]
    rounds: int
    usage: Usage
    faults_repaired: list[str]
    raw: str


async def ask_for_plan(
    chat: ChatFn,
    goal: str,
    context: str = "",
    *,
    max_subtasks: int = 8,
    max_tokens: int = 1024,
    temperature: float | None = 0.2,
    capabilities: Sequence[str] | None = None,
    allow_network: bool = False,
) -> PlanResult:
    """Ask for a plan; one repair round with the faults; ``PlanError`` if the repair is invalid too.
    ``capabilities``: what the workers offer, all a subtask may require (``None``: not checked);
    ``allow_network``: subtasks may ask for the network in their sandbox (``agent.planner_network``)."""
    system = PLANNER_PROMPT.format(max_subtasks=max_subtasks, types=", ".join(SUBTASK_TYPES))
    user = f"Goal: {goal}" + (f"\n\nRepository files:\n{context}" if context else "")
    messages = [Message.system(system), Message.user(user)]
    schema = ResponseSchema(plan_schema(max_subtasks, capabilities, network=allow_network), name="plan")
    prompt = completion = 0
    repaired: list[str] = []
    for round_ in (1, 2):
        reply = await chat(
            ChatRequest(messages, response_schema=schema, max_tokens=max_tokens, temperature=temperature)
        )
        if reply.usage:
            prompt, completion = (
                prompt + reply.usage.prompt_tokens,
                completion + reply.usage.completion_tokens,
            )
        try:
            subtasks = validate_plan(reply.content, max_subtasks, capabilities, network=allow_network)
        except PlanError as exc:
            if round_ == 2:
                raise PlanError(
                    [f"plan still invalid after one repair round: {f}" for f in exc.faults]
                ) from None
            repaired = list(exc.faults)
            note = repair_note(exc.faults, reply.content, cut=reply.finish_reason == "length")
            messages = [Message.system(system), Message.user(f"{user}\n\n{note}")]
            continue
        return PlanResult(subtasks, round_, Usage(prompt, completion), repaired, reply.content)
    raise AssertionError("unreachable")


def repair_note(faults: Sequence[str], reply: str, *, cut: bool = False) -> str:
    """What the repair round adds to the first prompt, instead of the whole invalid reply (which could
    fill a small window on its own): the faults, cut short, and the start of the reply when it is not
    JSON (otherwise the faults quote what was wrong). So the repair prompt is the first one plus under
    600 characters, and fits the window the first round fitted. ``cut``: the reply stopped at the
    token limit, so a shorter plan is asked for."""
    listed: list[str] = []
    for fault in faults[:MAX_FAULTS]:
        room = FAULTS_CHARS - sum(map(len, listed))
        if listed and room < min(len(fault), FAULT_CHARS):
            break
        listed.append(_cut(fault, min(FAULT_CHARS, room)))
    if len(faults) > len(listed):
        listed.append(f"({len(faults) - len(listed)} more)")
    began = ""
    if not _is_json(reply):
        excerpt = _cut(" ".join(reply.split()), EXCERPT_CHARS)
        began = f" It began: {excerpt}" if excerpt else " It was empty."
    shorter = " It was cut off at the token limit: keep the plan short." if cut else ""
    return (
        f"Your previous plan was invalid.{began}{shorter}\nIts faults:\n- "
        + "\n- ".join(listed)
        + "\nReply with a corrected plan, JSON only."
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_uniform(specs: Sequence[TaskSpec], root: Path, slots: int = 4) -> list[TaskSpec]:
    """Cut refactoring/porting subtasks that list many files into balanced parts (by file size).

    The parts keep the subtask's dependencies; whatever depended on it depends on every part.
    """
    out: list[TaskSpec] = []
    renamed: dict[str, list[str]] = {}
    for spec in specs:
        files = list(spec.run.agent.files or ()) if isinstance(spec.run, AgentRun) else []
        if spec.type not in UNIFORM_TYPES or len(files) < UNIFORM_MIN_FILES:
            out.append(spec)
            continue
        weights = {f: float(max(1, _size(root / f))) for f in dict.fromkeys(files)}
        parts = split_balanced(weights, choose_parts(sum(weights.values()), len(weights), slots, 0.0))
        ids = [f"{spec.id}-{i + 1}" for i in range(len(parts))]
        renamed[spec.id] = ids
        for pid, part in zip(ids, parts, strict=True):
            out.append(
                spec.model_copy(
                    update={
                        "id": pid,
                        "title": f"{spec.title} ({pid})"[:200],
                        "run": spec.run.for_items(part.items),
                        "description": part_description(spec.description, part.items),
                    }
                )
            )
    if not renamed:
        return out
    return [
        s.model_copy(update={"depends_on": [d2 for d in s.depends_on for d2 in renamed.get(d, [d])]})
        for s in out
    ]


def chain(specs: Sequence[TaskSpec]) -> list[TaskSpec]:
    """Each subtask also depends on the one before it: the plan runs in order, and no two subtasks edit
    the same files in parallel (weak models tend to pick the same file names)."""
    out = list(specs[:1])
    for prev, spec in itertools.pairwise(specs):
        deps = spec.depends_on if prev.id in spec.depends_on else [*spec.depends_on, prev.id]
        out.append(spec.model_copy(update={"depends_on": deps}))
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 1


def describe(specs: Sequence[TaskSpec]) -> str:
    return "; ".join(f"{s.id} ({s.type.value})" for s in specs)


def plan_output(result: PlanResult, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "summary": f"planned {len(result.subtasks)} subtasks: {describe(result.subtasks)}",
        "subtasks": [s.model_dump(mode="json") for s in result.subtasks],
        "plan_rounds": result.rounds,
        "repaired": result.faults_repaired,
        "tokens": result.usage.total_tokens,
        **extra,
    }
