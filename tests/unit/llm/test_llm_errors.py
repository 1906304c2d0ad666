"""Wire errors mapped into the tree, pure."""

from __future__ import annotations

import json

import httpx
import pytest

from helixcode.errors import HelixError, LLMError
from helixcode.llm import errors as e


def status(code: int, body: object, retry_after: str | None = None) -> e.LLMError:
    text = body if isinstance(body, str) else json.dumps(body)
    return e.from_http_status(code, text, provider="p", model="m", retry_after=retry_after)


@pytest.mark.parametrize(
    ("code", "body", "kind"),
    [
        (401, {"error": {"message": "bad key", "type": "invalid_request_error"}}, e.AuthError),
        (403, {"error": "forbidden"}, e.AuthError),
        (400, {"error": {"message": "bad", "type": "invalid_request_error"}}, e.BadRequest),
        (422, "unprocessable", e.BadRequest),
        (404, {"error": 'model "x" not found, try pulling it first'}, e.ModelNotFound),
        (500, {"error": {"message": "boom"}}, e.ServerError),
        (502, "<html>bad gateway</html>", e.ServerError),
        (
            503,
            {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
            e.ModelLoading,
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            e.Overloaded,
        ),
        (429, {"error": {"message": "slow down"}}, e.RateLimited),
    ],
)
def test_status_mapping(code: int, body: object, kind: type[e.LLMError]) -> None:
    err = status(code, body)
    assert type(err) is kind
    assert getattr(err, "status", None) == code


def test_retry_after_is_kept_on_429_and_503() -> None:
    assert status(429, {}, "12").retry_after == 12.0  # type: ignore[attr-defined]
    assert status(503, {}, "3").retry_after == 3.0  # type: ignore[attr-defined]


def test_retry_after_http_date() -> None:
    assert e.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert e.parse_retry_after("soon") is None
    assert e.parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "error": {
                    "message": "This model's maximum context length is 512 tokens. However, you "
                    "requested 718 tokens (710 in the messages, 8 in the completion).",
                    "code": "context_length_exceeded",
                }
            },
            (718, 512),
        ),
        (
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 4096,
                }
            },
            (5000, 4096),
        ),
        (
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210 tokens > 200 maximum",
                },
            },
            (210, 200),
        ),
    ],
)
def test_context_overflow_in_each_dialect(body: object, expected: tuple[int, int]) -> None:
    err = status(400, body)
    assert isinstance(err, e.ContextLengthExceeded)
    assert (err.n_prompt, err.n_ctx) == expected


def test_in_process_overflow_message() -> None:
    assert e.context_overflow("Requested tokens (600) exceed context window of 512") == (600, 512)
    assert e.context_overflow("all good") is None


def test_transport_errors() -> None:
    req = httpx.Request("GET", "http://x")
    assert isinstance(
        e.from_transport(httpx.ConnectError("refused", request=req), provider="p", model=None),
        e.ConnectionRefused,
    )
    assert isinstance(
        e.from_transport(httpx.ReadTimeout("slow", request=req), provider="p", model=None), e.ProviderTimeout
    )
    dropped = e.from_transport(
        httpx.RemoteProtocolError("peer closed", request=req), provider="p", model=None
    )
    assert isinstance(dropped, e.ConnectionDropped)


def test_tree_roots() -> None:
    assert issubclass(e.LLMError, HelixError)
    assert e.LLMError is LLMError
    for retryable in (
        e.ProviderTimeout,
        e.ConnectionRefused,
        e.ConnectionDropped,
        e.RateLimited,
        e.ServerError,
        e.Overloaded,
    ):
        assert issubclass(retryable, e.RetryableError)
    for final in (e.AuthError, e.BadRequest, e.ModelNotFound, e.Refusal, e.MissingExtra):
        assert issubclass(final, e.FinalError)
    assert not issubclass(e.ContextLengthExceeded, e.RetryableError | e.FinalError)


def test_messages_name_provider_and_model() -> None:
    assert str(e.AuthError("bad key", provider="cloud", model="m1")) == "cloud/m1: bad key"
    assert "helixcode[local]" in str(e.MissingExtra("llama-cpp-python", "local"))
