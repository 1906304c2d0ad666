"""Provider health: a circuit breaker per provider, 429 cool-downs per model, and a background monitor.

The breaker and the cool-downs are pure state machines over an injected clock; only :class:`HealthMonitor`
does I/O, and only through ``Provider.health()`` (cheap, unbilled probes, never a completion).

    closed --(threshold consecutive failures)--> open --(cooldown elapsed)--> half_open
    half_open --(trial succeeds)--> closed        half_open --(trial fails)--> open
    half_open --(trial ends without a verdict: 429, 4xx, cancelled)--> half_open, trial released
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from helixcode.llm.base import Provider
from helixcode.llm.types import HealthStatus

__all__ = ["BreakerState", "CircuitBreaker", "Cooldowns", "HealthMonitor"]

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


@dataclass
class CircuitBreaker:
    """Stops sending to a provider that keeps failing, and lets one trial through after ``cooldown``."""

    threshold: int = 3
    cooldown: float = 30.0
    clock: Clock = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial_out: bool = field(default=False, repr=False)

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allows(self) -> bool:
        """Whether a call may go now (a half-open breaker lets one trial at a time)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._trial_out)

    def begin(self) -> None:
        """Note that a call is going out (a half-open breaker then holds further calls)."""
        if self.state == "half_open":
            self._trial_out = True

    def open_for(self, seconds: float) -> None:
        """Open now, until ``seconds`` from now (the fleet says the provider is down that long)."""
        self.opened_at = self.clock() - self.cooldown + max(0.0, seconds)
        self._trial_out = False

    def settle(self) -> None:
        """A call ended without a verdict on the provider (a 4xx, a 429, a context overflow, a
        cancellation, a local timeout): release the trial it may have held, change nothing else. Every
        call ends here (``finally``), so a half-open breaker can never wait for a trial that is over."""
        self._trial_out = False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        self._trial_out = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock()  # a failed trial re-opens for a full cooldown


@dataclass
class Cooldowns:
    """``(provider, model)`` pairs told to wait by a 429's ``Retry-After``."""

    clock: Clock = time.monotonic
    until: dict[tuple[str, str], float] = field(default_factory=dict)

    def cool(self, provider: str, model: str, seconds: float) -> None:
        key = (provider, model)
        self.until[key] = max(self.until.get(key, 0.0), self.clock() + seconds)

    def remaining(self, provider: str, model: str) -> float:
        return max(0.0, self.until.get((provider, model), 0.0) - self.clock())

    def is_cool(self, provider: str, model: str) -> bool:
        return self.remaining(provider, model) > 0


class HealthMonitor:
    """Probes every provider every ``interval`` seconds in the background and caches the answers."""

    def __init__(self, providers: Mapping[str, Provider], *, interval: float = 30.0) -> None:
        self.providers = providers
        self.interval = interval
        self.status: dict[str, HealthStatus] = {}
        self._task: asyncio.Task[None] | None = None

    def healthy(self, name: str) -> bool:
        """Unknown counts as healthy: the first real call will tell, and the breaker guards it."""
        status = self.status.get(name)
        return status is None or status.ok

    async def probe_all(self) -> dict[str, HealthStatus]:
        names = list(self.providers)
        results = await asyncio.gather(*(self._probe(n) for n in names))
        self.status.update(zip(names, results, strict=True))
        return dict(self.status)

    async def _probe(self, name: str) -> HealthStatus:
        started = time.monotonic()
        try:
            status = await asyncio.wait_for(self.providers[name].health(), timeout=max(self.interval, 5.0))
        except Exception as exc:  # a probe reports, it never kills the monitor
            status = HealthStatus(False, f"probe failed: {exc}", time.monotonic() - started)
        if not status.ok:
            log.info(
                "provider unhealthy",
                extra={"action": "llm.health", "provider": name, "detail": status.detail},
            )
        return status

    async def _run(self) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="llm-health-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
