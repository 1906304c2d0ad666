"""Selection order, requirements, backoff and the after-error decision, pure."""

from __future__ import annotations

import pytest

from helixcode.llm import errors as e
from helixcode.llm.policy import (
    Candidate,
    Requirements,
    RetryPolicy,
    backoff,
    counts_against_breaker,
    decide,
    larger_windows,
    model_matches,
    select,
)
from helixcode.llm.types import ChatRequest, Message, ModelCapabilities, ResponseSchema, Tool

FULL = ModelCapabilities(tools=True, json_schema=True, vision=True, context_length=32768)
PLAIN = ModelCapabilities(tools=False, json_schema=False, context_length=4096)


def cand(
    name: str,
    caps: ModelCapabilities = FULL,
    priority: int = 100,
    cost: float = 0.0,
    latency: float | None = None,
) -> Candidate:
    return Candidate(name, "m", caps, priority, cost, latency)


def names(cands: list[Candidate]) -> list[str]:
    return [c.provider for c in cands]


def test_order_is_priority_then_cost_then_latency() -> None:
    pool = [
        cand("slow", latency=2.0),
        cand("fast", latency=0.1),
        cand("unmeasured"),
        cand("cheap-low-priority", priority=200),
        cand("expensive", cost=5.0, latency=0.01),
        cand("preferred", priority=1, cost=9.0),
    ]
    assert names(select(pool, Requirements(), available=lambda c: True)) == [
        "preferred",
        "fast",
        "slow",
        "unmeasured",
        "expensive",
        "cheap-low-priority",
    ]


def test_requirements_filter_and_availability() -> None:
    pool = [cand("full"), cand("plain", PLAIN), cand("down")]
    assert names(select(pool, Requirements(tools=True), available=lambda c: c.provider != "down")) == ["full"]
    assert names(select(pool, Requirements(min_context=8000), available=lambda c: True)) == ["full", "down"]
    assert names(select(pool, Requirements(vision=True, json_schema=True), available=lambda c: True)) == [
        "full",
        "down",
    ]


def test_requirements_from_the_request() -> None:
    tool = Tool("f")
    assert Requirements.for_request(ChatRequest([Message.user("x")], tools=[tool])).tools
    assert not Requirements.for_request(
        ChatRequest([Message.user("x")], tools=[tool], tool_choice="none")
    ).tools
    req = ChatRequest([Message.user("x")], response_schema=ResponseSchema({}))
    assert Requirements.for_request(req, Requirements(min_context=10)) == Requirements(
        json_schema=True, min_context=10
    )


def test_larger_windows() -> None:
    pool = [cand("a", PLAIN), cand("b", FULL)]
    assert names(larger_windows(pool, e.ContextLengthExceeded(5000, 4096))) == ["b"]
    assert names(larger_windows(pool, e.ContextLengthExceeded(40000, 4096))) == []


def test_backoff_is_capped_jittered_and_floored_by_retry_after() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0)
    assert backoff(0, policy, rand=1.0) == 0.5
    assert backoff(3, policy, rand=1.0) == 4.0
    assert backoff(10, policy, rand=1.0) == 4.0
    assert backoff(2, policy, rand=0.0) == 0.0
    assert backoff(0, policy, retry_after=3.0, rand=0.5) == 3.0
    assert 0 <= backoff(1, policy) <= 1.0


@pytest.mark.parametrize(
    ("exc", "attempt", "action"),
    [
        (e.ConnectionRefused("down"), 0, "next"),
        (e.ServerError("boom"), 0, "retry"),
        (e.ServerError("boom"), 1, "next"),
        (e.RateLimited("slow", retry_after=30), 0, "next"),
        (e.RateLimited("slow", retry_after=0.5), 0, "retry"),
        (e.Overloaded("busy"), 0, "retry"),
        (e.ProviderTimeout("slow"), 0, "retry"),
        (e.ContextLengthExceeded(10, 5), 0, "next"),
        (e.AuthError("bad key"), 0, "next"),
        (e.ModelNotFound("nope"), 0, "next"),
        (e.BadRequest("bad"), 0, "raise"),
        (e.Refusal("no"), 0, "raise"),
    ],
)
def test_decide(exc: e.LLMError, attempt: int, action: str) -> None:
    assert (
        decide(exc, attempt, RetryPolicy(attempts_per_candidate=2, max_wait=2.0), rand=1.0).action == action
    )


def test_refused_connection_never_waits() -> None:
    assert decide(e.ConnectionRefused("down"), 0, RetryPolicy()).delay == 0.0


def test_what_counts_against_the_breaker() -> None:
    assert counts_against_breaker(e.ServerError("x"))
    assert counts_against_breaker(e.ConnectionRefused("x"))
    assert not counts_against_breaker(e.RateLimited("x"))
    assert not counts_against_breaker(e.AuthError("x"))


def test_model_matches() -> None:
    assert model_matches("/models/SmolLM2.Q4.gguf", "SmolLM2.Q4")
    assert model_matches("/models/SmolLM2.Q4.gguf", "SmolLM2.Q4.gguf")
    assert model_matches("llama3.2:latest", "llama3.2")
    assert not model_matches("gpt-4o", "gpt-4")
