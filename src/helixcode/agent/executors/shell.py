"""Run a task's shell command in its job's working directory.

The command sees ``HELIX_JOB_ID``, ``HELIX_TASK_ID``, ``HELIX_TASK_KEY``, ``HELIX_ATTEMPT``,
``HELIX_LEASE_TOKEN``, ``HELIX_DATABASE_URL`` and, from the second attempt on, ``HELIX_CHECKPOINT`` (a
file holding the latest checkpoint as JSON), so ``helix checkpoint`` and ``helix progress`` inside it
write with the task's lease: through the worker, over the Unix socket named in ``HELIX_TASK_SOCKET``
(``agent.task_channel``), or, where the socket cannot be reached, through the database. Split parts
get their work items in ``HELIX_ITEMS``, one per line. When the worker traces, ``TRACEPARENT`` names the
attempt's span (for programs that continue a trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

from helixcode import tracing
from helixcode.agent.executors.base import TaskContext
from helixcode.agent.task_channel import SOCKET_ENV, task_channel
from helixcode.domain.runs import ShellRun
from helixcode.errors import TaskFailed

__all__ = ["ShellExecutor"]

OUTPUT_TAIL = 4000
KILL_GRACE = 3.0


class ShellExecutor:
    async def execute(self, ctx: TaskContext) -> dict[str, Any]:
        run = ctx.run_as(ShellRun)
        with tempfile.TemporaryDirectory(prefix="helix-task-") as scratch:
            env = self._env(ctx, run, Path(scratch))
            cwd = ctx.workdir if ctx.workdir and os.path.isdir(ctx.workdir) else None  # noqa: ASYNC240
            if ctx.workdir and cwd is None:
                # A fault of this host, not of the task: another worker (a host with the folder) may
                # run it, so the attempt is retried with backoff like any other failure.
                raise TaskFailed(
                    f"working directory {ctx.workdir} does not exist on host {socket.gethostname()}; "
                    "the task is retried, on a worker that has it if one claims it first "
                    "(route it with `requires` to be sure)"
                )
            async with task_channel(ctx, Path(scratch)) as channel:
                env[SOCKET_ENV] = str(channel)
                proc = await asyncio.create_subprocess_shell(
                    run.shell,
                    cwd=cwd,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,  # its own process group, so a cancel stops its children too
                )
                try:
                    stdout, stderr = await proc.communicate()
                except BaseException:
                    await _terminate(proc)
                    raise
        out = stdout.decode(errors="replace")[-OUTPUT_TAIL:]
        err = stderr.decode(errors="replace")[-OUTPUT_TAIL:]
        output: dict[str, object] = {"exit_code": proc.returncode, "stdout": out, "stderr": err}
        if proc.returncode != 0:
            last = err.strip().splitlines()[-1:] or out.strip().splitlines()[-1:]
            detail = f": {last[0][:300]}" if last else ""
            raise TaskFailed(f"command exited with {proc.returncode}{detail}", output=output)
        return output

    @staticmethod
    def _env(ctx: TaskContext, run: ShellRun, scratch: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(run.env)
        env.update(ctx.extra_env)
        env.update(
            {
                "HELIX_JOB_ID": ctx.task.job_id,
                "HELIX_TASK_ID": str(ctx.task.id),
                "HELIX_TASK_KEY": ctx.task.key,
                "HELIX_ATTEMPT": str(ctx.attempt),
                "HELIX_LEASE_TOKEN": ctx.token,
                "HELIX_DATABASE_URL": ctx.database_url,
            }
        )
        env.pop("HELIX_CHECKPOINT", None)
        env.pop(SOCKET_ENV, None)  # a worker run inside a task must not hand on its parent's channel
        if ctx.claim.checkpoint is not None:
            path = scratch / "checkpoint.json"
            path.write_text(json.dumps(ctx.claim.checkpoint.data))
            env["HELIX_CHECKPOINT"] = str(path)
        if run.items:
            env["HELIX_ITEMS"] = "\n".join(run.items)
        env.update(tracing.environment())
        return env


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
