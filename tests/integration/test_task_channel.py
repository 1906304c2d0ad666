"""The task channel: `helix progress` and `helix checkpoint` inside a shell task reach the worker over a
Unix socket (``agent.task_channel``, ``cli.entry``) instead of opening the database themselves."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from helixcode.agent.executors.base import TaskContext
from helixcode.agent.task_channel import task_channel
from helixcode.cli.entry import through_channel
from helixcode.config import Settings, WorkersSettings
from helixcode.domain.enums import TaskStatus
from helixcode.errors import LeaseLost
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.helpers import spec

HELIX = f"{shlex.quote(sys.executable)} -m helixcode"


async def test_a_shell_task_reports_through_its_worker(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """Without the database's URL in its environment the command can only reach the worker's database
    through the channel: the progress and the checkpoint arrive there. A fraction out of range is left
    to the full command line, which refuses it (exit 2) as before."""
    script = "\n".join(
        [
            "set -e",
            "unset HELIX_DATABASE_URL",
            f'{HELIX} progress 0.25 "a quarter"',
            f"{HELIX} checkpoint '{{\"step\": 1}}' --name step",
            f"{HELIX} progress 1.5 2>/dev/null || echo out-of-range=$?",
        ]
    )
    job = await store.create_job(spec({"id": "sh", "run": {"shell": script}}), workdir=str(tmp_path))
    worker_settings = settings.model_copy(
        update={"workers": WorkersSettings(poll_interval=0.1, drain_timeout=0.0)}
    )
    options = WorkerOptions(concurrency=1, exit_when_idle=True, detect=False, sample_gpu=False)
    async with asyncio.timeout(60):
        await Worker(store, worker_settings, options).run()
    task = await store.get_task(job.id, "sh")
    assert task.status is TaskStatus.SUCCEEDED, task.last_error
    assert "out-of-range=2" in (await store.task_outputs(job.id))["sh"]["stdout"]
    progress = [e.details for e in await store.task_events(task.id) if e.kind == "progress"]
    assert {"fraction": 0.25, "message": "a quarter"} in progress
    [saved] = await store.list_checkpoints(task.id)
    assert (saved.name, saved.data) == ("step", {"step": 1})
    assert not (tmp_path / ".helix").exists(), "nothing fell back to a database of its own"


def _context(token: str, *, refuse: bool = False) -> tuple[TaskContext, list[tuple[str, Any]]]:
    """The channel's side of an attempt: its token and its two writes (recorded, or refused as a lost
    lease would be)."""
    writes: list[tuple[str, Any]] = []

    async def report_progress(fraction: float, message: str | None) -> None:
        if refuse:
            raise LeaseLost(7, token)
        writes.append(("progress", (fraction, message)))

    async def save_checkpoint(name: str, data: Any) -> None:
        if refuse:
            raise LeaseLost(7, token)
        writes.append(("checkpoint", (name, data)))

    ctx = SimpleNamespace(token=token, report_progress=report_progress, save_checkpoint=save_checkpoint)
    return cast(TaskContext, ctx), writes


async def test_the_channel_answers_refuses_and_names_the_fault(tmp_path: Path, capsys: Any) -> None:
    ctx, writes = _context("tok")
    async with task_channel(ctx, tmp_path) as path:
        env = {"HELIX_TASK_SOCKET": str(path), "HELIX_LEASE_TOKEN": "tok"}

        def call(*args: str, **extra: str) -> int | None:
            return through_channel(list(args), {**env, **extra})

        assert await asyncio.to_thread(call, "progress", "0.5", "half") == 0
        assert await asyncio.to_thread(call, "checkpoint", "--name=a", '{"x": [1, 2]}') == 0
        assert await asyncio.to_thread(call, "checkpoint", "[]") == 0
        assert writes == [
            ("progress", (0.5, "half")),
            ("checkpoint", ("a", {"x": [1, 2]})),
            ("checkpoint", ("checkpoint", [])),
        ]
        # A stale token (a command left over from an earlier attempt) is refused as bad input.
        assert await asyncio.to_thread(call, "progress", "0.5", HELIX_LEASE_TOKEN="old") == 2
        assert "not this attempt's" in capsys.readouterr().err
        # What this parser does not take is the full command line's to judge (and to explain).
        for args in (
            ["progress", "2"],
            ["progress", "x"],
            ["progress", "--help"],
            ["checkpoint", "{bad"],
            ["checkpoint", "{}", "--other"],
            ["status"],
        ):
            assert await asyncio.to_thread(call, *args) is None, args
        assert len(writes) == 3
    # The socket is gone with the attempt: the full command line (the database) takes over.
    assert not path.exists()
    assert through_channel(["progress", "0.5"], env) is None
    assert through_channel(["progress", "0.5"], {"HELIX_LEASE_TOKEN": "tok"}) is None


async def test_a_refused_write_fails_the_command_with_the_reason(tmp_path: Path, capsys: Any) -> None:
    ctx, _ = _context("tok", refuse=True)
    async with task_channel(ctx, tmp_path) as path:
        env = {"HELIX_TASK_SOCKET": str(path), "HELIX_LEASE_TOKEN": "tok"}
        assert await asyncio.to_thread(through_channel, ["checkpoint", '{"i": 3}'], env) == 1
    assert "lease lost on task 7" in capsys.readouterr().err


async def test_a_malformed_request_gets_a_clear_refusal(tmp_path: Path) -> None:
    ctx, writes = _context("tok")
    async with task_channel(ctx, tmp_path) as path:
        for line, fault in (
            (b"not json\n", "not a JSON request"),
            (b'{"op": "progress", "token": "tok", "fraction": "half"}\n', "must be a number"),
            (b'{"op": "progress", "token": "tok", "fraction": 0.5, "message": 3}\n', "must be text"),
            (b'{"op": "checkpoint", "token": "tok"}\n', "no data"),
            (b'{"op": "delete", "token": "tok"}\n', "unknown op"),
        ):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(line)
            await writer.drain()
            reply = await reader.readline()
            writer.close()
            await writer.wait_closed()
            assert fault in reply.decode(), (line, reply)
            assert '"code": 2' in reply.decode()
    assert writes == []
