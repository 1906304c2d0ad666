"""Run a function of the plan author's own code: ``run: {python: "package.module:function", args: {...}}``.

So that code written for Celery or procrastinate can run under HelixCode's scheduling (priorities,
dependencies, retries, leases, checkpoints)::

    # mypkg/jobs.py, importable on the worker's PYTHONPATH
    from helixcode.agent.executors import PythonContext

    async def resize(folder: str, ctx: PythonContext) -> dict:
        done = (ctx.checkpoint or {}).get("done", 0)     # a resumed attempt starts from here
        for i in range(done, 100):
            ...
            await ctx.save_checkpoint({"done": i + 1})
            await ctx.report_progress((i + 1) / 100, f"{i + 1} of 100")
        return {"resized": 100}

    # plan.yaml
    run: {python: "mypkg.jobs:resize", args: {folder: photos}}

- The module is imported from the worker's ``PYTHONPATH``; a missing module or attribute fails the task
  at once (``retryable=False``), naming it.
- Keyword arguments come from ``args``. A parameter annotated ``PythonContext`` (or named ``ctx``)
  gets the context: ``checkpoint`` (the latest saved data, or None), ``save_checkpoint(data)``,
  ``report_progress(fraction, note)`` (each with a ``_sync`` twin for plain functions), ``attempt``,
  ``task_key``, ``job_id``, and ``items`` (a split part's share, else None).
- An ``async def`` runs on the worker's event loop; a plain function runs in a thread (it cannot be
  interrupted: after a timeout or a cancel it stops at its next ``_sync`` call, which raises
  ``CancelledError``).
- The return value, which must be JSON (else the task fails naming the type), is the task's result:
  ``{"result": <value>}``. An exception fails the attempt (retried while attempts remain) with its
  type, message and traceback; raise ``helixcode.errors.TaskFailed(..., retryable=False)`` to fail
  for good.

Trust: this is the plan author's code, trusted like a shell task's command. It runs inside the worker's
own process with the worker's permissions, NOT in the sandbox that confines what a model chose, and it
requires no capability by default.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import math
import threading
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from helixcode.agent.executors.base import TaskContext
from helixcode.domain.runs import PythonRun
from helixcode.errors import TaskFailed

__all__ = ["PythonContext", "PythonExecutor"]

T = TypeVar("T")
TRACEBACK_CHARS = 4000
CHECKPOINT = "python"


class PythonContext:
    """What a Python task's function may ask for (see the module's docstring)."""

    def __init__(self, ctx: TaskContext, run: PythonRun, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self._latest: Any = ctx.checkpoint
        self._stopped = threading.Event()
        self.items: list[str] | None = run.items

    @property
    def checkpoint(self) -> Any:
        """The latest saved data: this attempt's, else the previous attempt's, else None."""
        return self._latest

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    @property
    def task_key(self) -> str:
        return self._ctx.task.key

    @property
    def job_id(self) -> str:
        return self._ctx.task.job_id

    async def save_checkpoint(self, data: Any) -> None:
        """Save JSON ``data``; the next attempt, on any worker, starts with it as ``checkpoint``."""
        await self._ctx.save_checkpoint(CHECKPOINT, data)
        self._latest = data

    async def report_progress(self, fraction: float, note: str | None = None) -> None:
        await self._ctx.report_progress(fraction, note)

    def save_checkpoint_sync(self, data: Any) -> None:
        """``save_checkpoint`` from a plain function (which runs in a thread)."""
        self._call(self.save_checkpoint(data))

    def report_progress_sync(self, fraction: float, note: str | None = None) -> None:
        self._call(self.report_progress(fraction, note))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coro.close()
            raise RuntimeError("the _sync methods are for plain functions; in async code, await the others")
        if self._stopped.is_set():
            coro.close()
            raise asyncio.CancelledError("the attempt has ended (timed out, cancelled or lease lost)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


class PythonExecutor:
    async def execute(self, ctx: TaskContext) -> dict[str, Any]:
        run = ctx.run_as(PythonRun)
        func = await _resolve(run.python)
        pctx = PythonContext(ctx, run, asyncio.get_running_loop())
        kwargs = _arguments(run, func, pctx)
        try:
            if _is_async(func):
                value = await func(**kwargs)
            else:
                value = await asyncio.to_thread(func, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
        except BaseException as exc:
            pctx._stopped.set()
            if isinstance(exc, TaskFailed | asyncio.CancelledError | KeyboardInterrupt):
                raise
            raise TaskFailed(  # SystemExit too: the function's sys.exit() must not stop the worker
                f"{run.python} raised {type(exc).__name__}: {exc}",
                output={"error": type(exc).__name__, "traceback": traceback.format_exc()[-TRACEBACK_CHARS:]},
            ) from exc
        pctx._stopped.set()
        if (fault := not_json(value)) is not None:
            raise TaskFailed(
                f"{run.python} returned {fault}, which is not JSON-serialisable", retryable=False
            )
        return {"result": json.loads(json.dumps(value))}


async def _resolve(target: str) -> Callable[..., Any]:
    """The callable ``target`` names (``package.module:attribute.path``), imported in a thread (an
    import may be slow, and the worker's leases must keep being renewed meanwhile)."""
    module_name, _, path = target.partition(":")
    try:
        obj: Any = await asyncio.to_thread(importlib.import_module, module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            raise TaskFailed(
                f"python: no module '{module_name}' on the worker's PYTHONPATH", retryable=False
            ) from exc
        raise TaskFailed(f"python: importing '{module_name}' failed: {exc}", retryable=False) from exc
    except Exception as exc:
        raise TaskFailed(
            f"python: importing '{module_name}' failed: {type(exc).__name__}: {exc}", retryable=False
        ) from exc
    walked: list[str] = []
    for name in path.split("."):
        if not hasattr(obj, name):
            owner = f"{module_name}:{'.'.join(walked)}" if walked else f"module '{module_name}'"
            raise TaskFailed(f"python: {owner} has no attribute '{name}'", retryable=False)
        obj = getattr(obj, name)
        walked.append(name)
    if not callable(obj):
        raise TaskFailed(f"python: '{target}' is a {type(obj).__name__}, not a function", retryable=False)
    return obj  # type: ignore[no-any-return]


def _arguments(run: PythonRun, func: Callable[..., Any], pctx: PythonContext) -> dict[str, Any]:
    """``args``, plus the context for the parameter that asks for it; checked against the signature."""
    try:
        signature = inspect.signature(func, eval_str=True)
    except (NameError, TypeError, ValueError):  # an annotation that does not resolve: compare names
        signature = inspect.signature(func)
    kwargs = dict(run.args)
    wanted = [name for name, p in signature.parameters.items() if _asks_for_context(name, p.annotation)]
    for name in wanted[:1]:
        if name in kwargs:
            raise TaskFailed(f"python: args may not set '{name}', the context parameter", retryable=False)
        kwargs[name] = pctx
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise TaskFailed(f"python: cannot call {run.python} with these args: {exc}", retryable=False) from exc
    return kwargs


def _asks_for_context(name: str, annotation: Any) -> bool:
    if name == "ctx" or annotation is PythonContext:
        return True
    return isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == PythonContext.__name__


def _is_async(func: Callable[..., Any]) -> bool:
    """An ``async def`` (anything else that returns an awaitable is awaited after its thread)."""
    return inspect.iscoroutinefunction(func)


def not_json(value: Any) -> str | None:
    """None when ``value`` is JSON; else what is not, by type (``a set``, ``a float NaN``)."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"a float {value!r}"
    if isinstance(value, list | tuple):
        return next((f for f in map(not_json, value) if f is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key of type {type(key).__name__}"
            if (fault := not_json(item)) is not None:
                return fault
        return None
    return f"a {type(value).__name__}"
