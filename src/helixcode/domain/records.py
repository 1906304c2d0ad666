"""The read models the store returns and the edges show: workers, finished attempts, queue counts, API tokens.

Plain, immutable dataclasses with no I/O, so that the API, the MCP server and the command line can take
them from the engine (or, for a remote server, rebuild them from JSON) without importing the store.
Times are seconds since the epoch (floats) by the database clock.

    WorkerInfo(id="w1", name="build-1", host="h", pid=42, version="0.1", capabilities=("python",),
               resources={}, concurrency=2).to_dict()["concurrency"]   # 2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ROLES", "ApiToken", "AttemptRecord", "Role", "WorkerInfo"]

Role = Literal["viewer", "operator", "admin"]
#: Weakest first: a role may do what every role before it may.
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A registered worker: what it offers, its latest resource sample, and how many tasks it runs."""

    id: str
    name: str
    host: str
    pid: int
    version: str
    capabilities: tuple[str, ...]
    resources: dict[str, Any]
    concurrency: int
    status: str = "active"
    started_at: float | None = None
    last_heartbeat_at: float | None = None
    stopped_at: float | None = None
    running: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt of a task: outcome, error, output, who ran it and when."""

    attempt: int
    outcome: str
    worker_id: str | None
    error: str | None
    output: dict[str, Any]
    started_at: float | None
    finished_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as stored: its role and use, never its secret (only a hash of it is kept)."""

    id: str
    name: str
    role: Role
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
