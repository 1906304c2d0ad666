"""The task channel: how `helix progress` and `helix checkpoint`, run by a shell task, reach the worker
that runs the task, instead of opening the database themselves.

A shell task may report progress hundreds of times. Through the database each call started the whole
command line (Typer, pydantic settings, SQLAlchemy: most of a second) and opened a connection of its
own (on PostgreSQL one more backend per call, outside the worker's connection budget). The worker
already holds the lease and a pool, so for the length of the command it listens on a Unix socket in
the attempt's private scratch folder (mode 0700: only the worker's user can connect) and names it in
``HELIX_TASK_SOCKET``; `helix progress` then needs only the standard library (``cli.entry``).

The protocol is one JSON line each way per connection::

    -> {"op": "progress", "token": "...", "fraction": 0.5, "message": "half"}
    -> {"op": "checkpoint", "token": "...", "name": "step", "data": {...}}
    <- {"ok": true}   |   {"ok": false, "error": "...", "code": 1 or 2}

The write goes through the attempt's own context (fenced by its lease token, as every write of the
attempt is) and the reply waits for it, so a checkpoint is durable when the command returns. ``code``
2 is a bad request (the command line's exit code for bad input), 1 a refusal (the lease is gone, the
checkpoint too large).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helixcode.agent.executors.base import TaskContext
from helixcode.errors import HelixError

__all__ = ["SOCKET_ENV", "task_channel"]

#: The variable that names the socket in the command's environment.
SOCKET_ENV = "HELIX_TASK_SOCKET"
#: The longest request line: a checkpoint at ``tasks.checkpoint_max_bytes``'s ceiling, with room.
MAX_LINE = 64 * 1024 * 1024


class _BadRequest(Exception):
    """A request the channel cannot act on (exit code 2 at the command line)."""


@contextlib.asynccontextmanager
async def task_channel(ctx: TaskContext, folder: Path) -> AsyncIterator[Path]:
    """Serve the channel of the attempt ``ctx`` on ``folder/helix.sock`` while the block runs."""
    path = folder / "helix.sock"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await _answer(ctx, await reader.readline())
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the command went away, or sent more than a line can hold: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(serve, path=str(path), limit=MAX_LINE)
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()
        path.unlink(missing_ok=True)  # a command still holding the name meets no socket, not a dead one


async def _answer(ctx: TaskContext, line: bytes) -> dict[str, Any]:
    try:
        request = _parse(line, ctx.token)
        if request["op"] == "progress":
            await ctx.report_progress(request["fraction"], request.get("message"))
        else:
            await ctx.save_checkpoint(request["name"], request["data"])
    except _BadRequest as exc:
        return {"ok": False, "error": str(exc), "code": 2}
    except HelixError as exc:  # the lease is gone, the checkpoint too large, the database down
        return {"ok": False, "error": str(exc), "code": 1}
    return {"ok": True}


def _parse(line: bytes, token: str) -> dict[str, Any]:
    """The request, checked; ``_BadRequest`` naming the fault otherwise."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise _BadRequest(f"task channel: not a JSON request: {exc}") from exc
    if not isinstance(request, dict):
        raise _BadRequest("task channel: the request must be a JSON object")
    if request.get("token") != token:
        raise _BadRequest("task channel: the lease token is not this attempt's (HELIX_LEASE_TOKEN)")
    op = request.get("op")
    if op == "progress":
        fraction = request.get("fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not math.isfinite(fraction):
            raise _BadRequest("progress: the fraction must be a number from 0 to 1")
        if not 0.0 <= fraction <= 1.0:
            raise _BadRequest(f"progress: {fraction} is not from 0 to 1")
        message = request.get("message")
        if message is not None and not isinstance(message, str):
            raise _BadRequest("progress: the message must be text")
        return {"op": op, "fraction": float(fraction), "message": message}
    if op == "checkpoint":
        name = request.get("name", "checkpoint")
        if not isinstance(name, str) or not name:
            raise _BadRequest("checkpoint: the name must be non-empty text")
        if "data" not in request:
            raise _BadRequest("checkpoint: no data")
        return {"op": op, "name": name, "data": request["data"]}
    raise _BadRequest(f"task channel: unknown op {op!r} (progress or checkpoint)")
