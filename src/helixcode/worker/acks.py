"""Batched acknowledgements on the worker's side: successes that finish together are written together.

Each runner awaits its own completion; the first one to arrive schedules a flush that waits one turn of
the event loop (so runners finishing in the same turn join it) and then writes the whole batch with the
store's ``complete_many``. A refused item raises ``LeaseLost`` in its own runner only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from helixcode.errors import LeaseLost

__all__ = ["AckBatcher"]

Completion = tuple[int, str, Mapping[str, Any] | None]


class AckBatcher:
    def __init__(self, write: Callable[[Sequence[Completion]], Awaitable[list[int]]], max_batch: int) -> None:
        self._write = write
        self._max = max(1, max_batch)
        self._pending: list[tuple[Completion, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def complete(self, task_id: int, token: str, output: Mapping[str, Any] | None) -> None:
        """Record one success with the next batch; raises ``LeaseLost`` if its lease was gone."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(((task_id, token, output), done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="acks")
        await done

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the runners finishing in this turn join the batch
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    refused = set(await self._write([item for item, _ in batch]))
                except asyncio.CancelledError:
                    for _, fut in batch:
                        fut.cancel()
                    raise
                except Exception as exc:  # each runner handles it as it would a failed ``complete``
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (task_id, token, _), fut in batch:
                    if fut.done():
                        continue
                    if task_id in refused:
                        fut.set_exception(LeaseLost(task_id, token))
                    else:
                        fut.set_result(None)
        finally:
            self._flusher = None
            for _, fut in self._pending:  # only left when the flush itself failed or was cancelled
                if not fut.done():
                    fut.cancel()
            self._pending = []
