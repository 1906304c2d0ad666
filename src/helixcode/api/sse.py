"""Server-Sent Events over the job's event log: the log is the buffer, its ids are the resume cursor.

A client that reconnects with ``Last-Event-ID`` (browsers' EventSource do it by themselves) continues
right after the last event it saw, so nothing is missed and nothing repeats. The stream ends with an
``end`` event once the job is finished and every event has been sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from helixcode.domain.models import Event
from helixcode.engine.manager import TaskManager

__all__ = ["event_stream", "format_event"]

BATCH = 500


def format_event(event: Event) -> str:
    data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


async def event_stream(
    manager: TaskManager,
    job_id: str,
    after: int,
    *,
    poll: float = 0.5,
    keepalive: float = 15.0,
) -> AsyncIterator[str]:
    """Yield SSE frames from ``after`` on, polling the log; a comment line keeps idle proxies open."""
    cursor = after
    quiet_since = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        batch = await manager.events(job_id, cursor, BATCH, settled=True)
        for event in batch:
            yield format_event(event)
            cursor = event.id
        if batch:
            quiet_since = time.monotonic()
            continue
        if (await manager.summary(job_id)).job.status.terminal:
            # The final events commit with the job's status: read the rest unsettled, then stop.
            while rest := await manager.events(job_id, cursor, BATCH):
                for event in rest:
                    yield format_event(event)
                    cursor = event.id
            yield f"event: end\ndata: {json.dumps({'job_id': job_id, 'last_event_id': cursor})}\n\n"
            return
        if time.monotonic() - quiet_since >= keepalive:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll)
