"""Selection order, requirements, backoff and the after-error decision, pure."""

from __future__ import annotations

import itertools

import pytest

from helixcode.llm import errors as e
from helixcode.llm.policy import (
    Candidate,
    Requirements,
    RetryPolicy,
    backoff,
    counts_against_breaker,
    decide,
    fits,
    larger_windows,
    model_matches,
    rank,
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


# -- selection by needs: pins, hard filters, the largest window first -------------------------------


def test_fits_pins_by_exact_name_file_name_or_stem() -> None:
    gguf = Candidate("llama", "/models/qwen2.5-coder.Q4.gguf", FULL)
    tagged = Candidate("ollama", "llama3.2:latest", FULL)
    for wanted in ("/models/qwen2.5-coder.Q4.gguf", "qwen2.5-coder.Q4.gguf", "qwen2.5-coder.Q4"):
        assert fits(gguf, Requirements(models=(wanted,)))
    assert fits(tagged, Requirements(models=("llama3.2",)))
    assert not fits(gguf, Requirements(models=("qwen2.5",)))
    assert fits(gguf, Requirements(models=("other", "qwen2.5-coder.Q4")))  # any of the pins
    assert fits(gguf, Requirements())  # no pin: any model
    assert not fits(
        Candidate("p", "x", PLAIN), Requirements(tools=True, models=("x",))
    )  # pins do not lift needs


def test_a_named_request_replaces_the_pins() -> None:
    pinned = Requirements(tools=True, models=("a", "b"), largest_context=True)
    named = Requirements.for_request(ChatRequest([Message.user("x")], model="c"), pinned)
    assert named.models == ("c",)
    assert named.largest_context
    assert Requirements.for_request(ChatRequest([Message.user("x")]), pinned).models == ("a", "b")


def test_largest_window_first_then_priority() -> None:
    pool = [
        cand("preferred-small", ModelCapabilities(json_schema=True, context_length=4096), priority=1),
        cand("big", ModelCapabilities(json_schema=True, context_length=131072), priority=50),
        cand(
            "big-cheaper", ModelCapabilities(json_schema=True, context_length=131072), priority=50, cost=0.1
        ),
        cand(
            "big-preferred", ModelCapabilities(json_schema=True, context_length=131072), priority=10, cost=9
        ),
        cand("unknown-window", ModelCapabilities(json_schema=True), priority=0),
        cand("no-schema", ModelCapabilities(context_length=1_000_000), priority=0),
    ]
    planning = Requirements(json_schema=True, largest_context=True)
    assert names(select(pool, planning, available=lambda c: True)) == [
        "big-preferred",
        "big",
        "big-cheaper",
        "preferred-small",
        "unknown-window",
    ]
    assert names(select(pool, Requirements(json_schema=True), available=lambda c: True))[:2] == [
        "unknown-window",
        "preferred-small",
    ]


def test_rank_is_window_then_priority_cost_latency() -> None:
    c = cand("a", ModelCapabilities(context_length=8192), priority=3, cost=0.5, latency=0.2)
    assert rank(c, Requirements()) == (0, 3, 0.5, 0.2)
    assert rank(c, Requirements(largest_context=True)) == (-8192, 3, 0.5, 0.2)
    assert rank(cand("b"), Requirements())[3] == float("inf")


WINDOWS = (None, 512, 4096, 32768)
CAPS = [
    ModelCapabilities(tools=t, json_schema=j, vision=v, context_length=w)
    for t, j, v, w in itertools.product((False, True), (False, True), (False, True), WINDOWS)
]
POOL = [
    Candidate(
        f"p{i}", f"m{i % 3}", caps, priority=(i * 7) % 5, cost=float(i % 2), latency_s=None if i % 4 else 0.1
    )
    for i, caps in enumerate(CAPS)
]
NEEDS = [
    Requirements(tools=t, json_schema=j, vision=v, min_context=mc, models=pins, largest_context=lc)
    for t, j, v, mc, pins, lc in itertools.product(
        (False, True), (False, True), (False, True), (None, 4096), ((), ("m1",), ("m0", "m2")), (False, True)
    )
]


@pytest.mark.parametrize("req", NEEDS, ids=str)
def test_select_over_every_capability_combination(req: Requirements) -> None:
    """Over a pool with every capability combination: exactly the models that have what is needed, are
    pinned (when pins are given) and are available come back, best first."""
    down = {c.provider for c in POOL[::5]}
    order = select(POOL, req, available=lambda c: c.provider not in down)

    def wanted(c: Candidate) -> bool:
        caps = c.capabilities
        return (
            c.provider not in down
            and (caps.tools or not req.tools)
            and (caps.json_schema or not req.json_schema)
            and (caps.vision or not req.vision)
            and (req.min_context is None or (caps.context_length or 0) >= req.min_context)
            and (not req.models or c.model in req.models)
        )

    assert {c.provider for c in order} == {c.provider for c in POOL if wanted(c)}
    assert len(order) == len({c.provider for c in order})
    for a, b in itertools.pairwise(order):
        wa, wb = a.capabilities.context_length or 0, b.capabilities.context_length or 0
        if req.largest_context and wa != wb:
            assert wa > wb
            continue
        assert (a.priority, a.cost) <= (b.priority, b.cost)
        if (a.priority, a.cost) == (b.priority, b.cost):
            assert a.latency_s is not None or b.latency_s is None  # measured before unmeasured
