"""The API's request and response bodies: typed so the OpenAPI schema is exact for clients and tests.

Response models mirror the domain records' ``to_dict()``; requests refuse unknown fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus, TaskType
from helixcode.domain.plan import JobSpec

__all__ = [
    "AttemptOut",
    "CancelOut",
    "CheckpointOut",
    "EventOut",
    "JobOut",
    "JobSummaryOut",
    "ModelOut",
    "PauseIn",
    "ProviderOut",
    "ResumeIn",
    "SubmitIn",
    "TaskDetailOut",
    "TaskOut",
    "TokenCreateIn",
    "TokenCreatedOut",
    "TokenOut",
    "WorkerOut",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitIn(_In):
    """Either a task graph (as for `helix submit`) or a goal for the planner, not both."""

    plan: JobSpec | None = Field(default=None, description="a task graph, as in a plan file")
    goal: str | None = Field(default=None, min_length=1, max_length=20_000, description="plan this goal")
    name: str | None = Field(default=None, min_length=1, max_length=200, description="goal: the job's name")
    workdir: str | None = Field(
        default=None, max_length=4096, description="where tasks run, on the server's host (absolute)"
    )

    @model_validator(mode="after")
    def _one_of(self) -> SubmitIn:
        if (self.plan is None) == (self.goal is None):
            raise ValueError("give exactly one of 'plan' or 'goal'")
        return self


class PauseIn(_In):
    reason: str = Field(default="paused by request", max_length=2000)


class ResumeIn(_In):
    retry: list[str] = Field(default_factory=list, max_length=1000, description="failed tasks to retry")
    skip: list[str] = Field(default_factory=list, max_length=1000, description="tasks to skip")
    raise_cost: float | None = Field(default=None, gt=0, description="USD to add to the job's max_cost")
    raise_tokens: int | None = Field(default=None, gt=0, description="tokens to add to the job's max_tokens")


class TokenCreateIn(_In):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["viewer", "operator", "admin"]


class JobOut(BaseModel):
    id: str
    name: str
    description: str
    status: JobStatus
    workdir: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    pause_reason: str | None
    max_cost: float | None = Field(None, description="USD the job's model calls may cost before it pauses")
    max_tokens: int | None = Field(None, description="tokens the job's model calls may use before it pauses")


class JobSummaryOut(JobOut):
    tasks: int
    counts: dict[str, int]
    progress: float
    eta_seconds: float | None
    tokens: int = Field(0, description="tokens of the job's model calls so far")
    cost_usd: float | None = Field(None, description="USD of those calls; null when no price is known")


class CancelOut(BaseModel):
    job_id: str
    cancelled: int = Field(description="tasks cancelled")


class TaskOut(BaseModel):
    id: int
    job_id: str
    key: str
    type: TaskType
    title: str
    description: str
    priority: Priority
    criticality: Criticality
    status: TaskStatus
    requires: list[str]
    depends_on: list[str]
    run: dict[str, Any]
    max_attempts: int
    attempts: int
    failures: int
    lease_losses: int
    timeout: float | None
    progress: float
    progress_message: str | None
    parent_key: str | None
    weight: float
    created_at: float
    ready_at: float | None
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    result: dict[str, Any] | None
    tokens: int = Field(0, description="prompt + completion tokens of the task's model calls, all attempts")
    cost_usd: float | None = Field(None, description="their cost in USD; null when no call had a known price")


class EventOut(BaseModel):
    id: int
    job_id: str
    task_key: str | None
    kind: str
    created_at: float
    attempt: int | None
    worker_id: str | None
    details: dict[str, Any]


class AttemptOut(BaseModel):
    attempt: int
    outcome: str
    worker_id: str | None
    error: str | None
    output: dict[str, Any]
    started_at: float | None
    finished_at: float


class CheckpointOut(BaseModel):
    attempt: int
    name: str
    data: Any
    created_at: float
    worker_id: str | None


class TaskDetailOut(BaseModel):
    task: TaskOut
    attempts: list[AttemptOut]
    checkpoints: list[CheckpointOut]
    events: list[EventOut]


class WorkerOut(BaseModel):
    id: str
    name: str
    host: str
    pid: int
    version: str
    capabilities: list[str]
    resources: dict[str, Any]
    concurrency: int
    status: str
    started_at: float | None
    last_heartbeat_at: float | None
    stopped_at: float | None
    running: int


class SampleOut(BaseModel):
    at: float = Field(description="when the heartbeat that carried it was recorded (database clock)")
    resources: dict[str, Any]


class WorkerHistoryOut(BaseModel):
    worker: WorkerOut
    samples: list[SampleOut] = Field(description="resource samples, oldest first")


class ModelOut(BaseModel):
    name: str
    tools: bool
    vision: bool
    json_schema: bool
    embeddings: bool
    streaming: bool
    context_length: int | None


class ProviderOut(BaseModel):
    name: str
    type: str
    priority: int
    cost: float
    healthy: bool
    health: str
    latency_s: float | None
    discovery_error: str | None
    models: list[ModelOut]


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="the secret: shown once, never stored")
