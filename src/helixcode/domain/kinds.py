"""The run kinds: one registry of models, their names and what they require by default.

Adding a kind is a model in ``domain.runs``, one ``RunKind`` line here and one executor in
``agent.executors.registry`` (a test checks that every model has one). Everything else reads this:
the plan schema (``RunSpec``), submit-time defaults (``default_requires``), ``run_kind``, and the
worker's choice of executor.

Plans are parsed strictly (``RunSpec``, through ``domain.plan``). Task rows stored before a model
changed may hold keys it no longer accepts: ``load_run`` is the one place that reads a stored run, and
it drops such keys with a logged warning, so old tasks still load and run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

from pydantic import Discriminator, Tag, ValidationError

from helixcode.domain.capabilities import AGENT_REQUIRES, TESTS_REQUIRES
from helixcode.domain.runs import AgentRun, BuiltinRun, PythonRun, RunModel, ShellRun, TestCycleRun
from helixcode.errors import PlanError

__all__ = [
    "DEFAULT_KIND",
    "RUN_KINDS",
    "RunKind",
    "RunSpec",
    "default_requires",
    "kind_of",
    "load_run",
    "run_kind",
    "run_model",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunKind:
    """A run kind: its name (the key of its JSON), its model, the capabilities it requires by default,
    and whether its tasks work on a git branch of their own (``helix/tasks/<job>/<task>``), which the
    tasks that depend on them start from; the others work in the job's directory and leave none."""

    name: str
    model: type[RunModel]
    requires: tuple[str, ...] = ()
    branch: bool = False


RUN_KINDS: tuple[RunKind, ...] = (
    RunKind("agent", AgentRun, AGENT_REQUIRES, branch=True),
    RunKind("shell", ShellRun),
    RunKind("builtin", BuiltinRun),
    RunKind("tests", TestCycleRun, TESTS_REQUIRES, branch=True),
    RunKind("python", PythonRun),
)
#: What a task without ``run`` (or with an empty one) does.
DEFAULT_KIND = RUN_KINDS[0]

_BY_NAME = {k.name: k for k in RUN_KINDS}
_BY_MODEL = {k.model: k for k in RUN_KINDS}


def kind_of(run: Any) -> RunKind | None:
    """The kind of a run as a model or as plain data (its first key that names a kind; an empty or
    missing run is the agent); None when it names none."""
    if run is None:
        return DEFAULT_KIND
    if isinstance(run, RunModel):
        return _BY_MODEL.get(type(run))
    if isinstance(run, Mapping):
        if not run:
            return DEFAULT_KIND
        return next((_BY_NAME[key] for key in run if key in _BY_NAME), None)
    return None


def run_kind(run: Any) -> str:
    """``agent``, ``shell``, ``builtin``, ``tests`` or ``python``; ``unknown`` for anything else."""
    found = kind_of(run)
    return found.name if found else "unknown"


def run_model(run: Any) -> type[RunModel] | None:
    found = kind_of(run)
    return found.model if found else None


def default_requires(task_type: str | None, run: Any) -> list[str]:
    """What a task requires when its plan does not say: the kind's defaults (see ``capabilities``)."""
    del task_type  # every type's agent needs the same; kept so a type can differ later without API change
    found = kind_of(run)
    return list(found.requires) if found else []


def _tag(value: Any) -> str | None:
    found = kind_of(value) if value is not None else None
    return found.name if found else None


_NAMES = ", ".join(k.name for k in RUN_KINDS)

if TYPE_CHECKING:
    RunSpec: TypeAlias = RunModel
else:
    #: A task's ``run`` in a plan: exactly one kind, chosen by its key, validated strictly.
    RunSpec = Annotated[
        Union[tuple(Annotated[k.model, Tag(k.name)] for k in RUN_KINDS)],  # noqa: UP007
        Discriminator(
            _tag,
            custom_error_type="run_kind",
            custom_error_message=f"must be a mapping keyed by one of: {_NAMES}",
        ),
    ]


def load_run(data: Any, *, job: str | None = None, task: str | None = None) -> RunModel:
    """A stored run (a task row's JSON) as its model, leniently: keys the model does not accept, and
    values it no longer accepts for fields that have a default, are dropped with a warning (the
    default applies). ``PlanError`` when the run names no kind or lacks what its kind needs."""
    found = kind_of(data)
    if found is None:
        raise PlanError([f"stored run {data!r}: not a mapping keyed by one of: {_NAMES}"])
    if isinstance(data, RunModel):
        return data
    # The common case, a run its model accepts as stored, validated as is: the copy below is for
    # dropping keys, and copying a run cost more than validating it on every claim.
    with contextlib.suppress(ValidationError):
        return found.model.model_validate(dict(data or {}))
    plain = copy.deepcopy(dict(data or {}))
    dropped: list[str] = []
    first: ValidationError | None = None
    for _ in range(4):  # each pass drops what the last one found; a nested model may need another
        try:
            run = found.model.model_validate(plain)
        except ValidationError as exc:
            first = first or exc
            faults = [e for e in exc.errors() if e["type"] != "missing"]
            if not faults or len(faults) < len(exc.errors()):
                break  # something it needs is missing (or was invalid): say what was wrong first
            for err in sorted(faults, key=lambda e: _sort_key(e["loc"]), reverse=True):
                if _drop(plain, err["loc"]):
                    dropped.append(".".join(map(str, err["loc"])))
            continue
        if dropped:
            log.warning(
                "stored %s run: ignored %s (no longer accepted)",
                found.name,
                ", ".join(dropped),
                extra={"action": "run.lenient", "job": job, "task_key": task, "dropped": dropped},
            )
        return run
    assert first is not None
    raise PlanError([f"stored {found.name} run: {_describe(first)}"])


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'run'}: {e['msg']}" for e in exc.errors())


def _sort_key(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    """Later list positions first, so dropping one does not move the next."""
    return tuple(f"{p:09d}" if isinstance(p, int) else p for p in loc)


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Remove the value at ``loc`` (a model-level fault, with an empty ``loc``, cannot be dropped)."""
    if not loc:
        return False
    parent = data
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del parent[loc[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True
