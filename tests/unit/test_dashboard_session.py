"""Browser sessions and charts of the dashboard, without a server: signed cookies refuse tampering
and age, CSRF tokens belong to one session, timeline slots never overlap, plots scale."""

from __future__ import annotations

import itertools

import pytest

from helixcode.api.dashboard.charts import lanes, plot_points, series
from helixcode.api.dashboard.pages import safe_next
from helixcode.api.dashboard.session import Sessions
from helixcode.domain.views import AttemptSpan


def test_a_cookie_is_signed_and_expires() -> None:
    sessions = Sessions(b"s" * 32, ttl=3600)
    value = sessions.issue("tok1", now=1000.0)
    claims = sessions.read(value, now=1001.0)
    assert claims is not None
    assert claims.token_id == "tok1"
    assert sessions.read(value, now=1000.0 + 3601) is None
    version, payload, signature = value.split(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B")
    assert sessions.read(f"{version}.{forged}.{signature}", now=1001.0) is None
    assert sessions.read(value[:-2], now=1001.0) is None
    assert Sessions(b"t" * 32, ttl=3600).read(value, now=1001.0) is None  # another server's key
    for junk in (None, "", "v1", "a.b.c", "v2.x.y", value + ".more"):
        assert sessions.read(junk, now=1001.0) is None
    with pytest.raises(ValueError, match="16 bytes"):
        Sessions(b"short", ttl=1)


def test_csrf_tokens_belong_to_one_session() -> None:
    sessions = Sessions.random(ttl=60)
    one = sessions.read(sessions.issue("tok", now=0.0), now=1.0)
    two = sessions.read(sessions.issue("tok", now=0.0), now=1.0)
    assert one is not None
    assert two is not None
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two))
    assert not sessions.csrf_ok(one, None)
    assert not sessions.csrf_ok(one, "")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/jobs/abc?x=1", "/jobs/abc?x=1"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("jobs", "/"),
    ],
)
def test_login_only_returns_to_this_site(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


def test_attempts_pack_into_slots_that_never_overlap() -> None:
    spans = [
        AttemptSpan("a", 1, "w1", 0.0, 10.0, "succeeded"),
        AttemptSpan("b", 1, "w1", 1.0, 4.0, "failed"),
        AttemptSpan("b", 2, "w1", 5.0, 7.0, "succeeded"),
        AttemptSpan("c", 1, "w1", 10.0, None, None),  # running: ends now
        AttemptSpan("d", 1, "w2", 2.0, 3.0, "succeeded"),
    ]
    rows = lanes(spans, now=20.0)
    assert [r["worker"] for r in rows] == ["w1", "w2"]
    w1 = rows[0]["lanes"]
    assert [[bar[0] for bar in lane] for lane in w1] == [["a", "c"], ["b", "b"]]
    assert w1[0][1] == ["c", 1, 10.0, None, None]
    for lane in w1:
        for earlier, later in itertools.pairwise(lane):
            assert (earlier[3] or 20.0) <= later[2]


def test_heartbeat_series_and_plot_points() -> None:
    samples = [
        (0.0, {"cpu_percent": 10, "memory_percent": 50.0, "gpus": [{"utilization": 5}]}),
        (10.0, {"cpu_percent": 150, "memory_percent": 60.0}),
    ]
    found = series(samples)
    assert found == {
        "cpu": [(0.0, 10.0), (10.0, 150.0)],
        "memory": [(0.0, 50.0), (10.0, 60.0)],
        "gpu0": [(0.0, 5.0)],
    }
    assert plot_points(found["cpu"], 0.0, 10.0, 100, 50) == "0.0,45.0 100.0,0.0"  # clipped at 100 %
    assert series([(0.0, {})]) == {}
