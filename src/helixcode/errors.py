"""Every error HelixCode raises on purpose derives from one root.

    HelixError
     ├── ConfigError                 bad or unknown settings (names the key and the file)
     ├── PlanError                   an invalid task graph; carries every fault found
     │    └── CycleError             names the cycle: ``a -> b -> c -> a``
     ├── StoreError                  the database failed; the driver's error is ``__cause__``
     │    ├── DatabaseUnavailable    cannot reach the database (connection refused or dropped): retry later
     │    └── NotFound               a job, task or worker that does not exist
     ├── SchedulerError              a request the engine refuses
     │    ├── InvalidTransition      a status change the state machine forbids
     │    └── LeaseLost              a write with a stale lease token (fencing)
     ├── TaskFailed                  an executor's attempt failed; ``retryable`` says if another may help
     ├── LLMError                    see ``helixcode.llm.errors`` for the provider tree
     ├── AccessDenied                a request without a valid token, or with too weak a role
     │    └── Forbidden              a valid token whose role may not do this
     ├── RemoteError                 the API server answered with a problem document (``status``, ``problem``)
     ├── McpError                    an MCP tool server failed, timed out or refused a call
     └── NotifyError                 a notification was not delivered (its outbox row is retried with backoff)

Edges (CLI, API) translate these into exit codes and problem documents; nothing below them prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AccessDenied",
    "ConfigError",
    "CycleError",
    "DatabaseUnavailable",
    "Forbidden",
    "HelixError",
    "InvalidTransition",
    "LLMError",
    "LeaseLost",
    "McpError",
    "NotFound",
    "NotifyError",
    "PlanError",
    "RemoteError",
    "SchedulerError",
    "StoreError",
    "TaskFailed",
]


class HelixError(Exception):
    """Root of every error HelixCode raises deliberately."""


class ConfigError(HelixError):
    """Settings that cannot be used as given."""


class PlanError(HelixError):
    """A task graph that cannot be accepted; ``faults`` lists every problem found. The message names
    the first ``SHOWN`` and counts the rest: a plan of 1,000 tasks that all lack one field would
    otherwise print a thousand lines' worth of the same fault."""

    SHOWN = 10

    def __init__(self, faults: Sequence[str]) -> None:
        self.faults: list[str] = list(faults)
        shown = "; ".join(self.faults[: self.SHOWN]) if self.faults else "invalid plan"
        if (more := len(self.faults) - self.SHOWN) > 0:
            shown += f"; and {more} more"
        super().__init__(shown)


class CycleError(PlanError):
    """A dependency cycle; ``cycle`` is the path, first node repeated at the end."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle: list[str] = list(cycle)
        super().__init__([f"dependency cycle: {' -> '.join(self.cycle)}"])


class StoreError(HelixError):
    """The database could not do what was asked."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached right now; the same call may succeed later."""


class NotFound(StoreError):
    """A job, task or worker that does not exist."""


class SchedulerError(HelixError):
    """A request the engine refuses."""


class InvalidTransition(SchedulerError):
    """A status change that the task state machine forbids."""


class LeaseLost(SchedulerError):
    """A worker wrote about a task with a lease token that is no longer current."""

    def __init__(self, task_id: int, token: str) -> None:
        self.task_id = task_id
        self.token = token
        super().__init__(f"lease lost on task {task_id}: token {token[:8]}… is no longer current")


class TaskFailed(HelixError):
    """An attempt at a task failed. ``retryable=False`` fails the task at once, whatever attempts remain."""

    def __init__(
        self, message: str, *, retryable: bool = True, output: dict[str, object] | None = None
    ) -> None:
        self.retryable = retryable
        self.output = output or {}
        super().__init__(message)


class LLMError(HelixError):
    """Root of the LLM layer's errors."""


class AccessDenied(HelixError):
    """No token, an unknown or revoked one: the caller is not known."""


class Forbidden(AccessDenied):
    """A known caller whose role does not allow this request."""


class RemoteError(HelixError):
    """The API server refused a request; ``problem`` is its RFC 9457 problem document."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        super().__init__(str(problem.get("detail") or problem.get("title") or f"HTTP {status}"))


class McpError(HelixError):
    """An MCP server could not be reached, timed out, or reported a tool error."""


class NotifyError(HelixError):
    """A webhook or mail server did not take a notification: unreachable, timed out, or answered with
    an error. ``retry_after`` is the delay the receiver asked for (HTTP ``Retry-After``), if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
