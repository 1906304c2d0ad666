"""The circuit breaker state machine and the 429 cool-downs, on a fake clock."""

from __future__ import annotations

import pytest

from helixcode.llm.health import CircuitBreaker, Cooldowns


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_opens_after_consecutive_failures(clock: Clock) -> None:
    b = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"
    assert b.allows()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"  # the success reset the count
    b.record_failure()
    assert b.state == "open"
    assert not b.allows()


def test_half_open_lets_one_trial_through(clock: Clock) -> None:
    b = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    b.record_failure()
    clock.now = 9.9
    assert b.state == "open"
    clock.now = 10
    assert b.state == "half_open"
    assert b.allows()
    b.begin()
    assert not b.allows()  # one trial at a time
    b.record_success()
    assert b.state == "closed"
    assert b.allows()


def test_failed_trial_reopens_for_a_full_cooldown(clock: Clock) -> None:
    b = CircuitBreaker(threshold=2, cooldown=10, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.now = 10
    b.begin()
    b.record_failure()
    assert b.state == "open"
    clock.now = 19
    assert b.state == "open"
    clock.now = 20
    assert b.state == "half_open"


def test_begin_on_a_closed_breaker_changes_nothing(clock: Clock) -> None:
    b = CircuitBreaker(clock=clock)
    b.begin()
    b.begin()
    assert b.allows()


def test_cooldowns_per_provider_and_model(clock: Clock) -> None:
    c = Cooldowns(clock=clock)
    c.cool("p", "m", 5)
    c.cool("p", "m", 2)  # a shorter hint never shortens a cool-down
    assert c.is_cool("p", "m")
    assert not c.is_cool("p", "other")
    assert c.remaining("p", "m") == 5
    clock.now = 5
    assert not c.is_cool("p", "m")
