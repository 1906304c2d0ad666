"""The metrics' decisions without a database: what a log row adds, and how the rollup cursor moves."""

from __future__ import annotations

import json

from helixcode.domain import metrics as m
from helixcode.domain.metrics import (
    CLAIM_LATENCY,
    LLM_LATENCY,
    TASK_DURATION,
    CallRow,
    Cursor,
    Deltas,
    EventGroup,
    Gap,
    Observed,
    call_deltas,
    event_deltas,
)


def values(deltas: Deltas) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(name, tuple(sorted(json.loads(labels).items()))): v for (name, labels), v in deltas.items()}


def test_histogram_buckets_are_cumulative_with_a_sum() -> None:
    deltas = Deltas()
    deltas.observe(LLM_LATENCY, 0.3, provider="p", model="m")
    deltas.observe(LLM_LATENCY, 7.0, provider="p", model="m")
    got = values(deltas)
    bucket = "helix_llm_latency_seconds_bucket"

    def le(bound: str) -> float:
        return got.get((bucket, (("le", bound), ("model", "m"), ("provider", "p"))), 0.0)

    assert le("0.25") == 0
    assert le("0.5") == le("5.0") == 1
    assert le("10.0") == le("+Inf") == 2
    assert got[("helix_llm_latency_seconds_sum", (("model", "m"), ("provider", "p")))] == 7.3


def test_events_count_by_task_type_and_outcome() -> None:
    deltas = Deltas()
    event_deltas(
        [
            EventGroup("created"),
            EventGroup("claimed", 1, True, "building", wait=Observed.of(CLAIM_LATENCY, 0.02)),
            EventGroup("succeeded", 1, True, "building", duration=Observed.of(TASK_DURATION, 1.5)),
            EventGroup("claimed", 1, True, "testing", wait=Observed.of(CLAIM_LATENCY, 0.2)),
            EventGroup("retried", 1, True, "testing", duration=Observed.of(TASK_DURATION, 0.4)),
            EventGroup("retried", 1, True, "testing", by="request"),  # a person's retry: no attempt failed
            EventGroup("requeued", 1, True, "testing", reason="lease expired"),
            EventGroup("failed", 1, True, "testing", reason="lease lost too often"),
            EventGroup("landing_refused", 1, True, None),
            EventGroup("failed"),  # the job
        ],
        deltas,
    )
    got = values(deltas)
    assert got[("helix_tasks_claimed_total", (("type", "building"),))] == 1
    assert got[("helix_tasks_succeeded_total", (("type", "building"),))] == 1
    assert got[("helix_tasks_retried_total", (("type", "testing"),))] == 1
    assert got[("helix_tasks_requeued_total", (("type", "testing"),))] == 1
    assert got[("helix_tasks_failed_total", (("type", "testing"),))] == 1
    assert got[("helix_lease_losses_total", (("type", "testing"),))] == 2
    assert got[("helix_sandbox_refusals_total", (("kind", "landing"),))] == 1
    assert got[("helix_jobs_created_total", ())] == 1
    assert got[("helix_jobs_finished_total", (("status", "failed"),))] == 1
    assert got[("helix_events_total", (("kind", "retried"),))] == 2
    inf = ("le", "+Inf")
    duration = TASK_DURATION.bucket
    assert got[(duration, (inf, ("outcome", "succeeded"), ("type", "building")))] == 1
    assert got[(duration, (inf, ("outcome", "failed"), ("type", "testing")))] == 1
    assert got[(CLAIM_LATENCY.bucket, (inf, ("type", "testing")))] == 1
    assert got[(CLAIM_LATENCY.sum, (("type", "building"),))] == 0.02


def test_model_calls_count_tokens_errors_latency_and_first_token() -> None:
    deltas = Deltas()
    call_deltas(
        [
            CallRow("p", "m", True, 10, 5, 2, 0.5, 0.1, 0.001),
            CallRow("p", "m", False, 0, 0, 0, 2.0, None, None),
        ],
        deltas,
    )
    got = values(deltas)

    def at(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted({"provider": "p", "model": "m", **labels}.items())))]

    assert at("helix_llm_calls_total", outcome="ok") == 1
    assert at("helix_llm_calls_total", outcome="error") == 1
    assert at("helix_llm_tokens_total", kind="prompt") == 10
    assert at("helix_llm_tokens_total", kind="cached") == 2
    assert at("helix_llm_cost_usd_total") == 0.001
    assert at("helix_llm_latency_seconds_bucket", le="+Inf") == 2
    assert at("helix_llm_ttft_seconds_bucket", le="+Inf") == 1


def test_every_sample_name_maps_back_to_its_family() -> None:
    for family in m.FAMILIES:
        for sample in family.samples:
            assert m.family_of(sample) is family
    assert m.family_of("helix_no_such_total") is None


def test_a_cursor_without_gaps_just_moves_on() -> None:
    cursor, dropped = Cursor().advance([1, 2, 5], [], now=0.0, track_gaps=False)
    assert cursor == Cursor(5)
    assert dropped == 0
    assert Cursor(5).advance([], [], now=1.0)[0] == Cursor(5)


def test_ids_skipped_become_gaps_and_are_filled_when_they_commit() -> None:
    cursor, _ = Cursor(10).advance([11, 14, 15, 18], [], now=100.0, xmin=50, xmax=60)
    assert cursor.last_id == 18
    assert cursor.gaps == (Gap(12, 13, 100.0, 60), Gap(16, 17, 100.0, 60))
    # 12 and 17 commit: the rest of each gap stays.
    cursor, _ = cursor.advance([19], [12, 17], now=101.0, xmin=55, xmax=61)
    assert cursor.gaps == (Gap(13, 13, 100.0, 60), Gap(16, 16, 100.0, 60))
    assert cursor.last_id == 19


def test_a_gap_is_given_up_only_when_no_transaction_of_its_time_runs_and_it_is_old() -> None:
    cursor = Cursor(20, (Gap(12, 13, 100.0, 60),))
    # Transactions that were running when it was seen still run: kept.
    assert cursor.advance([], [], now=200.0, xmin=59, xmax=70)[0] == cursor
    # None runs any more, but the gap is younger than the settling time: kept.
    assert cursor.advance([], [], now=101.0, xmin=60, xmax=70)[0] == cursor
    # Both: given up.
    assert cursor.advance([], [], now=100.0 + m.GAP_SETTLE_SECONDS, xmin=60, xmax=70)[0] == Cursor(20)
    # A capped read of the gaps gives nothing up (rows may remain unread in them).
    assert cursor.advance([], [], now=200.0, xmin=99, xmax=99, found_all=False)[0] == cursor


def test_gaps_past_the_limit_drop_the_oldest() -> None:
    ids = list(range(2, 2 * (m.MAX_GAPS + 5) + 1, 2))  # every other id missing: one gap before each
    cursor, dropped = Cursor(0).advance(ids, [], now=0.0, xmin=1, xmax=2)
    assert dropped == 5
    assert len(cursor.gaps) == m.MAX_GAPS
    assert cursor.gaps[-1].hi == ids[-1] - 1


def test_gaps_round_trip_through_json() -> None:
    cursor = Cursor(9, (Gap(3, 4, 1.5, None), Gap(7, 7, 2.0, 12)))
    assert Cursor.load(9, json.loads(json.dumps(cursor.gaps_json()))) == cursor
