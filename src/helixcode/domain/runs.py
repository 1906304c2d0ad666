"""How a task runs: one strict pydantic model per run kind, as a plan writes it and a task row stores it.

Every kind's JSON is a mapping keyed by the kind's name::

    {agent: {max_rounds: 4}}                      the LLM agent for the task's type (the default)
    {shell: "make build", env: {...}}             a shell command in the job's working directory
    {builtin: sleep, seconds: 5}                  built-ins for tests and demos
    {tests: {command: "make test", rounds: 3}}    a test cycle's test run (see ``domain.testcycle``)
    {python: "pkg.module:function", args: {...}}  a function of the plan author's own code

Unknown fields are errors everywhere, the agent's options included (a misspelt ``max_round`` is a
fault of the plan, not a silently ignored key). Which kinds exist, what each requires by default and
how stored rows are read back is ``domain.kinds``; how each runs is ``agent.executors``.

Split parts (``helix split``) get their share of the work items through ``for_items``: each kind
carries them where its executor reads them (``files`` for the agent, test arguments for a test run,
``HELIX_ITEMS`` for a shell command, ``ctx.items`` for a Python function).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "MAX_TEST_ROUNDS",
    "AgentOptions",
    "AgentRun",
    "BuiltinRun",
    "PythonRun",
    "RunModel",
    "ShellRun",
    "TestCycleOptions",
    "TestCycleRun",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unset(value: Any) -> bool:
    return value is None


def _items(description: str = "a split part's work items (helix split)") -> Any:
    """A split part's work items: absent from the JSON unless the task is a part."""
    return Field(default=None, exclude_if=_unset, description=description)


class RunModel(_Strict):
    """What every run kind can do: take a split part's share of the work items."""

    def for_items(self, items: Sequence[str]) -> Self:
        """This run limited to ``items`` (a split part's share)."""
        return self.model_copy(update={"items": list(items)})


class AgentOptions(_Strict):
    """The agent's options (``run: {agent: {...}}``); an unknown option is an error.

    Only the options a plan sets are stored, so a planner's subtasks and a test cycle's debugging
    tasks inherit those their parent set and they leave unset.
    """

    provider: str | None = Field(default=None, min_length=1, description="use this provider")
    model: str | None = Field(default=None, min_length=1, description="use this model")
    max_rounds: int | None = Field(default=None, ge=1, description="tool rounds (default: the type's)")
    token_budget: int | None = Field(default=None, ge=1, description="tokens for the whole task")
    max_tokens: int = Field(default=512, ge=1, description="tokens per model reply")
    temperature: float | None = Field(default=0.2, ge=0, le=2)
    on_limit: Literal["succeed", "fail"] = Field(
        default="succeed", description="at the round limit or token budget: keep the work, or fail"
    )
    test_command: str | None = Field(default=None, min_length=1, description="run after the loop")
    check: str | None = Field(default=None, min_length=1, description="a command that checks the work")
    max_subtasks: int = Field(default=6, ge=1, description="planning: at most this many subtasks")
    history_chars: int = Field(default=6000, ge=0, description="past turns kept in the prompt")
    chain: bool = Field(default=False, description="planning: each subtask waits for the previous one")
    tool_choice: Literal["required", "named", "auto"] = Field(
        default="auto", description="how tools are forced: auto picks named for llama-cpp-python"
    )
    verify: bool = Field(default=True, description="run the test command after the loop; fail if it fails")
    on_conflict: Literal["fail", "debug"] = Field(
        default="fail", description="a merge conflict fails the task, or becomes a debugging task"
    )
    resolves: list[str] | None = Field(
        default=None, description="a conflict-resolution task: files that must end marker-free"
    )
    network: bool | None = Field(
        default=None, description="sandboxed commands may use the network (None: agent.network)"
    )
    files: list[str] | None = Field(
        default=None, description="the files to work on (a planner's subtask, a split part)"
    )

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {k: v for k, v in dumped.items() if k in self.model_fields_set}

    @property
    def debug_conflicts(self) -> bool:
        """Hand merge conflicts to a debugging task (never from a task that is resolving one)."""
        return self.on_conflict == "debug" and not self.resolves

    def merged(self, **changes: Any) -> AgentOptions:
        """These options with ``changes`` on top (validated, and counted as set)."""
        return AgentOptions.model_validate({**self.model_dump(), **changes})

    def under(self, inherited: AgentOptions) -> AgentOptions:
        """These options, with what they leave unset taken from ``inherited`` (a parent's)."""
        return inherited.merged(**self.model_dump())


class AgentRun(RunModel):
    """Run the LLM agent for the task's type (the default when ``run`` is omitted)."""

    agent: AgentOptions = Field(default_factory=AgentOptions)

    def for_items(self, items: Sequence[str]) -> Self:
        return self.model_copy(update={"agent": self.agent.merged(files=list(items))})


class ShellRun(RunModel):
    """Run a shell command in the job's working directory; exit 0 is success. A split part gets its
    items in ``HELIX_ITEMS``, one per line."""

    shell: str = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    items: list[str] | None = _items()


class BuiltinRun(RunModel):
    """A built-in executor: ``sleep`` (with checkpoints), ``noop``, or ``fail`` (for tests)."""

    builtin: Literal["sleep", "noop", "fail"]
    seconds: float = Field(default=0.0, ge=0, le=86_400)
    fail_attempts: int | None = Field(
        default=None, ge=1, description="fail: fail only the first N attempts, then succeed"
    )
    items: list[str] | None = _items()


#: How many debugging rounds one test cycle may take: each round nests its tasks one level deeper
#: (``test.test2.test3...``), and task keys are at most 64 characters.
MAX_TEST_ROUNDS = 8


class TestCycleOptions(_Strict):
    """A test cycle's settings, carried from each test run to the next (so a crash loses no count)."""

    __test__: ClassVar[bool] = False  # a test cycle's part, not a pytest test class

    command: str | None = Field(
        default=None, min_length=1, description="the test command; detected in the worktree when omitted"
    )
    rounds: int = Field(default=3, ge=0, le=MAX_TEST_ROUNDS, description="debugging rounds after a failure")
    round: int = Field(default=1, ge=1, description="which test run of the cycle this is (1: the first)")
    output_chars: int = Field(
        default=1500, ge=200, le=50_000, description="how much of the failure output a debugging task gets"
    )
    agent: AgentOptions = Field(default_factory=AgentOptions, description="the debugging tasks' options")
    network: bool | None = Field(
        default=None, description="the tests may use the network (None: the worker's agent.network)"
    )
    items: list[str] | None = _items(
        "a split part's tests: appended to the test command as arguments (helix split)"
    )

    @model_validator(mode="after")
    def _round_in_range(self) -> TestCycleOptions:
        if self.round > self.rounds + 1:
            raise ValueError(f"round {self.round} is past the last one ({self.rounds + 1})")
        return self


class TestCycleRun(RunModel):
    """Run the project's tests in a worktree; when they fail and rounds remain, the task becomes the
    parent of a debugging agent task and of a new test run on that task's work."""

    __test__: ClassVar[bool] = False  # a test cycle's part, not a pytest test class

    tests: TestCycleOptions

    def for_items(self, items: Sequence[str]) -> Self:
        return self.model_copy(update={"tests": self.tests.model_copy(update={"items": list(items)})})


def _dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


class PythonRun(RunModel):
    """Call a function of the plan author's own code, imported from the worker's ``PYTHONPATH``.

    Trusted like a shell command: it runs in the worker's own process, NOT in the sandbox, and
    requires no capability by default. Keyword arguments come from ``args``; the return value (JSON)
    is the task's result. A parameter annotated ``PythonContext`` (or named ``ctx``) gets checkpoints
    and progress (see ``agent.executors.python``).
    """

    python: str = Field(description="package.module:function (or package.module:Class.method)")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments, as JSON")
    items: list[str] | None = _items()

    @field_validator("python")
    @classmethod
    def _target(cls, value: str) -> str:
        module, _, attribute = value.partition(":")
        if not (_dotted(module) and _dotted(attribute)):
            raise ValueError(f"'{value}' is not 'package.module:function'")
        return value

    @field_validator("args")
    @classmethod
    def _keywords(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(k for k in value if not k.isidentifier())
        if bad:
            raise ValueError(f"argument names must be Python identifiers: {', '.join(map(repr, bad))}")
        return value
