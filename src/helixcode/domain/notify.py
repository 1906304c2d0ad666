"""Notifications, without I/O: which events are worth telling someone, what the message says in each
format, and how a webhook body is signed so that its receiver can trust it.

The store turns job-level events into :class:`Notice` values (``notices_from_events``) and queues one
outbox row per target that wants its kind (``wanted``); the sender renders each row's payload for its
target (``render``, ``subject``, ``email_text``) and signs the body (``sign``). Payloads are plain JSON::

    {"id": 17, "event": "job.failed", "at": "2026-11-30T09:28:21.675Z",
     "job": {"id": "70e6a53e4d63", "name": "build", "status": "failed",
             "tasks": {"succeeded": 3, "failed": 1}, "failed_tasks": [{"key": "bad", "error": "..."}]},
     "details": {}}

A signature is ``sha256=`` and the hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` with the target's
secret (as Stripe and Slack sign theirs); receivers recompute it and reject old timestamps::

    sign(b"s3cret", 1700000000, b'{"event":"job.failed"}')   # 'sha256=...'
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

__all__ = [
    "JOB_OUTCOMES",
    "NOTICE_KINDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Delivery",
    "Notice",
    "NoticeKind",
    "NotificationRecord",
    "email_text",
    "iso_time",
    "notices_from_events",
    "render",
    "sign",
    "subject",
    "summary",
    "verify",
    "wanted",
]

NoticeKind = Literal[
    "job.succeeded", "job.failed", "job.cancelled", "job.paused", "budget.reached", "worker.lost"
]
NOTICE_KINDS: tuple[str, ...] = get_args(NoticeKind)
#: What a target without ``events`` is sent: every way a job ends or stops to wait for a person.
JOB_OUTCOMES: frozenset[str] = frozenset(NOTICE_KINDS) - {"worker.lost"}
#: Webhook headers of a signed body.
TIMESTAMP_HEADER = "X-Helix-Timestamp"
SIGNATURE_HEADER = "X-Helix-Signature"
Format = Literal["json", "slack", "discord"]

#: Job-level event kinds (task_id is None) and the notice each one is.
_JOB_EVENTS: dict[str, NoticeKind] = {
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
    "paused": "job.paused",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to tell people about, before it is addressed to targets. ``details`` is the event's
    (a pause's ``reason``...); for ``worker.lost``, ``worker`` describes the worker."""

    kind: NoticeKind
    at: float
    job_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    worker: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox row a sender has claimed: ``attempt`` is this try's number, and the fencing token of
    its result (a sender whose lease ran out cannot overwrite the next one's)."""

    id: int
    target: str
    kind: str
    payload: Mapping[str, Any]
    attempt: int

    def body(self) -> dict[str, Any]:
        """The JSON document a target receives: the payload with the delivery's ``id``, which stays
        the same across retries (receivers de-duplicate on it: delivery is at least once)."""
        return {"id": self.id, **self.payload}


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """An outbox row as ``helix notify list`` shows it. ``status``: pending, delivered or failed."""

    id: int
    target: str
    kind: str
    job_id: str | None
    status: str
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    last_error: str | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def notices_from_events(rows: Iterable[Mapping[str, Any]]) -> list[Notice]:
    """The notices among event rows (as ``store.base.event`` builds them): job-level outcomes and
    pauses; a pause for the job's budget is ``budget.reached``. Task events are never notices."""
    found = []
    for row in rows:
        if row["task_id"] is not None:
            continue
        kind = _JOB_EVENTS.get(row["kind"])
        if kind is None:
            continue
        details = row["details"] or {}
        if kind == "job.paused" and details.get("budget"):
            kind = "budget.reached"
        found.append(Notice(kind, row["created_at"], row["job_id"], details))
    return found


def wanted(kind: str, events: Sequence[str] | None) -> bool:
    """Whether a target with this ``events`` filter (None: every job outcome) is sent ``kind``."""
    return kind in (JOB_OUTCOMES if events is None else events)


def iso_time(epoch: float | None) -> str | None:
    """``2026-11-30T09:28:21.675Z``: epoch seconds as UTC, to the millisecond."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- words ---------------------------------------------------------------------------------------


def _job_words(job: Mapping[str, Any]) -> str:
    return f"job '{job.get('name', '?')}' ({job.get('id', '?')})"


def _counts(job: Mapping[str, Any]) -> str:
    counts = job.get("tasks") or {}
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def summary(payload: Mapping[str, Any]) -> str:
    """One line saying what happened, for chat messages and the first line of an email."""
    kind = payload.get("event")
    job = payload.get("job") or {}
    details = payload.get("details") or {}
    if kind == "worker.lost":
        worker = payload.get("worker") or {}
        tasks = worker.get("tasks") or []
        return (
            f"HelixCode worker {worker.get('name', '?')} on {worker.get('host', '?')} was lost "
            f"(silent since {worker.get('last_heartbeat_at', '?')}); "
            f"{len(tasks)} running task(s) go back to the queue"
        )
    if kind == "test":
        return f"HelixCode test notification for target '{details.get('target', '?')}'"
    words = f"HelixCode {_job_words(job)}"
    counts = _counts(job)
    if kind == "job.succeeded":
        return f"{words} succeeded" + (f": {counts}" if counts else "")
    if kind == "job.failed":
        line = f"{words} failed" + (f": {counts}" if counts else "")
        first = next(iter(job.get("failed_tasks") or []), None)
        if first is not None:
            line += f"; task '{first.get('key')}': {_one_line(first.get('error') or first.get('status'))}"
        return line
    if kind == "job.cancelled":
        return f"{words} was cancelled"
    if kind in ("job.paused", "budget.reached"):
        return f"{words} paused: {_one_line(details.get('reason') or job.get('pause_reason') or 'no reason')}"
    return f"{words}: {kind}"


def subject(payload: Mapping[str, Any]) -> str:
    """An email subject naming the job (or worker) and what happened to it."""
    kind = str(payload.get("event"))
    job = payload.get("job") or {}
    if kind == "worker.lost":
        return f"[helix] worker {(payload.get('worker') or {}).get('name', '?')} lost"
    if kind == "test":
        return "[helix] test notification"
    outcome = {"budget.reached": "paused: budget reached"}.get(kind, kind.removeprefix("job."))
    return f"[helix] job '{job.get('name', '?')}' {outcome}"


def email_text(payload: Mapping[str, Any]) -> str:
    """The body of an email: the summary, then the whole payload for whoever needs the detail."""
    return f"{summary(payload)}\n\n{json.dumps(payload, indent=2, sort_keys=True)}\n"


def _one_line(text: Any, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _slack_escape(text: str) -> str:
    """Slack reads ``<...>`` as links and mentions; its documented escapes keep text literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(format: Format, payload: Mapping[str, Any]) -> bytes:
    """The request body for a webhook: the payload itself (``json``), or a chat message."""
    if format == "slack":
        message: Mapping[str, Any] = {"text": _slack_escape(summary(payload))}
    elif format == "discord":
        # No @everyone or role pings, whatever a job's name says.
        message = {"content": summary(payload)[:2000], "allowed_mentions": {"parse": []}}
    else:
        message = payload
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


# -- signatures ----------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``b"<timestamp>." + body`` keyed with ``secret``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes, timestamp: str, signature: str, body: bytes, now: float, tolerance: float = 300.0
) -> bool:
    """What a receiver does: the signature matches (compared in constant time) and the timestamp is
    within ``tolerance`` seconds of ``now`` (an old body replayed is refused)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)
