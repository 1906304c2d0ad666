"""``Client``: the blocking twin of ``AsyncClient``, for scripts and notebooks.

Not a second implementation (STYLE habit 1: async core, sync only at the edge). Each public method of
``AsyncClient`` is wrapped once, by ``_blocking`` (coroutines) or ``_blocking_iter`` (``follow``, an
async generator, becomes a plain generator), and runs on one private event loop in a background thread
through ``asyncio.run_coroutine_threadsafe``. Why a thread and not ``asyncio.run`` per call:

- the backend's connections (SQLAlchemy's pool, httpx's) belong to the loop that opened them, so every
  call must run on the same loop, and one loop kept alive is what lets them be reused between calls;
- it works where a loop is already running in the caller's thread (Jupyter, an async web framework),
  where ``asyncio.run`` refuses to start;
- ``follow`` can then hand out events one at a time while its generator stays suspended on that loop.

The wrappers are typed from the methods they wrap (``ParamSpec``), so ``Client.submit`` has exactly
``AsyncClient.submit``'s parameters for type checkers and editors; a test checks that every public
method of ``AsyncClient`` has its twin here.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from helixcode.client.aio import AsyncClient
from helixcode.errors import HelixError

if TYPE_CHECKING:
    from helixcode.config import Settings

__all__ = ["Client"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class _LoopThread:
    """An event loop running forever in a daemon thread, until ``stop``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="helixcode-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; an interrupted wait (Ctrl-C) cancels it there."""
        if self.loop.is_closed():
            coro.close()
            raise HelixError("this client is closed; create a new one")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """``AsyncClient.method`` as a blocking method of ``Client``."""

    def blocking(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._thread.run(method(self._async, *args, **kwargs))

    return _twin(blocking, method)


def _twin(blocking: F, method: Callable[..., Any]) -> F:
    """``blocking`` named and documented as ``method``, with its signature (``help(Client.submit)``)."""
    functools.update_wrapper(blocking, method)
    blocking.__qualname__ = f"Client.{method.__name__}"
    return blocking


async def _step(source: AsyncGenerator[T, None]) -> list[T]:
    """The next item, or none at the end: a plain value to carry back to the calling thread."""
    try:
        return [await anext(source)]
    except StopAsyncIteration:
        return []


def _blocking_iter(
    method: Callable[Concatenate[AsyncClient, P], AsyncGenerator[T, None]],
) -> Callable[Concatenate[Client, P], Iterator[T]]:
    """``AsyncClient.method``, an async generator, as a plain generator of ``Client``: each item is
    fetched on the loop when asked for, and leaving the loop early closes the async generator."""

    def blocking(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        source = method(self._async, *args, **kwargs)
        try:
            while step := self._thread.run(_step(source)):
                yield step[0]
        finally:
            if not self._thread.loop.is_closed():  # else the loop's shutdown closed it already
                self._thread.run(source.aclose())

    twin = _twin(blocking, method)
    # Its items, not an async generator of them: say nothing rather than the wrong thing.
    signature = inspect.signature(method).replace(return_annotation=inspect.Signature.empty)
    twin.__signature__ = signature  # type: ignore[attr-defined]
    return twin


class Client:
    """Submit, follow and control HelixCode jobs without ``async``; use as ``with`` (or ``close()``).

    Takes what ``AsyncClient`` takes (a database URL, or ``server=`` and ``token=``, or ``settings=``)
    and has its methods, blocking; ``follow`` is a plain generator::

        with Client() as helix:
            job = helix.submit("plan.yaml")
            for event in helix.follow(job.job.id):
                print(event.kind, event.task_key)
            print(helix.wait(job.job.id).job.status)
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        poll: float = 0.5,
    ) -> None:
        self._async = AsyncClient(database_url, server=server, token=token, settings=settings, poll=poll)
        self._thread = _LoopThread()

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient", "Client", 1)

    def __enter__(self) -> Self:
        self._thread.run(self._async.__aenter__())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the backend and stop the loop thread; the client cannot be used again."""
        if not self._thread.thread.is_alive():
            return
        try:
            self._thread.run(self._async.aclose())
        finally:
            self._thread.stop()

    submit = _blocking(AsyncClient.submit)
    submit_goal = _blocking(AsyncClient.submit_goal)
    status = _blocking(AsyncClient.status)
    jobs = _blocking(AsyncClient.jobs)
    tasks = _blocking(AsyncClient.tasks)
    events = _blocking(AsyncClient.events)
    follow = _blocking_iter(AsyncClient.follow)
    wait = _blocking(AsyncClient.wait)
    workers = _blocking(AsyncClient.workers)
    pause = _blocking(AsyncClient.pause)
    resume = _blocking(AsyncClient.resume)
    retry_task = _blocking(AsyncClient.retry_task)
    skip_task = _blocking(AsyncClient.skip_task)
    cancel = _blocking(AsyncClient.cancel)
