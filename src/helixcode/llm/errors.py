"""The LLM layer's error tree. Providers map every wire error into it at the edge and keep the cause.

    LLMError (helixcode.errors)
     ├── RetryableError               worth another try here, or on the next candidate
     │    ├── ProviderTimeout          connect / first-token / idle / total deadline passed
     │    ├── ProviderUnavailable      cannot talk to it right now
     │    │    ├── ConnectionRefused   nothing listens: move on at once, never sleep
     │    │    ├── ConnectionDropped   the peer hung up mid-response
     │    │    └── ModelLoading        llama.cpp answers 503 while it loads the weights
     │    ├── RateLimited              429; ``retry_after`` seconds when the server said so
     │    ├── ServerError              5xx (503 keeps ``retry_after`` too)
     │    └── Overloaded               Anthropic's 529 / ``overloaded_error``
     ├── FinalError                   the same request will fail again anywhere alike
     │    ├── AuthError                401 / 403
     │    ├── BadRequest               400 / 422: the request itself is wrong
     │    ├── ModelNotFound            404 or an unknown model name
     │    ├── Refusal                  the model declined to answer
     │    └── MissingExtra             an optional dependency is not installed
     ├── ContextLengthExceeded        (n_prompt, n_ctx): try a model with a larger window
     ├── StreamInterrupted            failed after content was yielded; carries the partial output
     ├── NoCandidate                  no healthy model meets the requirements; ``attempts`` lists why
     └── BudgetReached                the job's budget is spent: no new call until it is raised

Every error carries ``provider`` and ``model`` where known; HTTP errors carry ``status``.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from helixcode.errors import LLMError

if TYPE_CHECKING:
    from helixcode.llm.types import ChatResponse

__all__ = [
    "AuthError",
    "BadRequest",
    "BudgetReached",
    "ConnectionDropped",
    "ConnectionRefused",
    "ContextLengthExceeded",
    "FinalError",
    "LLMError",
    "MissingExtra",
    "ModelLoading",
    "ModelNotFound",
    "NoCandidate",
    "Overloaded",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "Refusal",
    "RetryableError",
    "ServerError",
    "StreamInterrupted",
    "context_overflow",
    "error_message",
    "from_http_status",
    "from_transport",
    "parse_retry_after",
]


class _ProviderError(LLMError):
    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after
        where = "/".join(p for p in (provider, model) if p)
        super().__init__(f"{where}: {message}" if where else message)


class RetryableError(_ProviderError):
    """Another attempt may succeed."""


class ProviderTimeout(RetryableError):
    pass


class ProviderUnavailable(RetryableError):
    pass


class ConnectionRefused(ProviderUnavailable):
    pass


class ConnectionDropped(ProviderUnavailable):
    pass


class ModelLoading(ProviderUnavailable):
    pass


class RateLimited(RetryableError):
    pass


class ServerError(RetryableError):
    pass


class Overloaded(RetryableError):
    pass


class FinalError(_ProviderError):
    """Retrying the same request elsewhere alike will not help."""


class AuthError(FinalError):
    pass


class BadRequest(FinalError):
    pass


class ModelNotFound(FinalError):
    pass


class Refusal(FinalError):
    pass


class MissingExtra(FinalError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, *, provider: str = "") -> None:
        self.extra = extra
        super().__init__(
            f"{package} is not installed: pip install 'helixcode[{extra}]'", provider=provider, model=None
        )


class ContextLengthExceeded(_ProviderError):
    """The prompt (plus room to answer) does not fit; ``n_prompt``/``n_ctx`` are tokens, 0 when unknown."""

    def __init__(
        self, n_prompt: int, n_ctx: int, *, provider: str = "", model: str | None = None, detail: str = ""
    ) -> None:
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx
        text = f"prompt of {n_prompt} tokens exceeds the context window of {n_ctx}"
        super().__init__(
            f"{text} ({detail})" if detail else text, provider=provider, model=model, status=None
        )


class StreamInterrupted(LLMError):
    """A stream failed after yielding content; ``partial`` holds what arrived, ``__cause__`` the reason."""

    def __init__(self, partial: ChatResponse, cause: BaseException) -> None:
        self.partial = partial
        super().__init__(f"stream interrupted after {len(partial.content)} characters: {cause}")


class BudgetReached(LLMError):
    """The job this call is for has spent its budget (``max_cost`` / ``max_tokens``): the job is
    paused and no new call starts until ``helix resume JOB --raise-budget``. Not the task's fault: a
    worker hands the task back (its work is checkpointed) rather than fail it."""


class NoCandidate(LLMError):
    """Nothing could serve the request; ``attempts`` are ``(provider/model, reason)`` pairs."""

    def __init__(self, reason: str, attempts: Sequence[tuple[str, str]] = ()) -> None:
        self.attempts = list(attempts)
        tried = "; ".join(f"{who}: {why}" for who, why in self.attempts)
        super().__init__(f"{reason}" + (f" (tried {tried})" if tried else ""))


# --- mapping at the edge -------------------------------------------------------------------------------

_CTX_PATTERNS = (
    # OpenAI, vLLM, llama-cpp-python: "maximum context length is 4096 tokens. However, you requested 5000"
    re.compile(
        r"maximum context length is (?P<ctx>\d+) tokens.*?(?:requested|resulted in) (?P<prompt>\d+)", re.S
    ),
    # llama-cpp-python in process: "Requested tokens (600) exceed context window of 512"
    re.compile(r"Requested tokens \((?P<prompt>\d+)\) exceed context window of (?P<ctx>\d+)"),
    # Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
    re.compile(r"prompt is too long: (?P<prompt>\d+) tokens > (?P<ctx>\d+)"),
    # llama.cpp server: "request (600 tokens) exceeds the available context size (512 tokens)"
    re.compile(r"request \((?P<prompt>\d+) tokens\) exceeds the available context size \((?P<ctx>\d+)"),
)
_CTX_WORDS = ("context length", "context window", "context size", "prompt is too long", "too many tokens")


def context_overflow(message: str, body: Mapping[str, Any] | None = None) -> tuple[int, int] | None:
    """``(n_prompt, n_ctx)`` when an error message or body says the context overflowed, else None."""
    if body:
        err = body.get("error", body)
        if isinstance(err, Mapping) and ("n_ctx" in err or err.get("type") == "exceed_context_size_error"):
            return int(err.get("n_prompt_tokens") or 0), int(err.get("n_ctx") or 0)
        if isinstance(err, Mapping) and err.get("code") == "context_length_exceeded":
            found = _match_ctx(str(err.get("message", message)))
            return found or (0, 0)
    found = _match_ctx(message)
    if found:
        return found
    return (0, 0) if any(w in message.lower() for w in _CTX_WORDS) else None


def _match_ctx(message: str) -> tuple[int, int] | None:
    for pattern in _CTX_PATTERNS:
        if m := pattern.search(message):
            return int(m["prompt"]), int(m["ctx"])
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(body: Any, fallback: str) -> str:
    """The human part of an error body in any of the shapes providers use."""
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            return str(err.get("message") or err.get("type") or json.dumps(err))
        if isinstance(err, str):
            return err
    return fallback or "no details"


def from_http_status(
    status: int,
    body_text: str,
    *,
    provider: str,
    model: str | None,
    retry_after: str | None = None,
) -> LLMError:
    """Map an HTTP error response to the tree; pure, so it is tested without a server."""
    try:
        body = json.loads(body_text) if body_text else None
    except ValueError:
        body = None
    message = error_message(body, body_text.strip()[:500])
    kw: dict[str, Any] = {"provider": provider, "model": model, "status": status}
    kind = _error_type(body)
    if overflow := context_overflow(message, body if isinstance(body, Mapping) else None):
        return ContextLengthExceeded(*overflow, provider=provider, model=model, detail=message)
    wait = parse_retry_after(retry_after)
    if status == 529 or kind == "overloaded_error":
        return Overloaded(message, retry_after=wait, **kw)
    if status == 429:
        return RateLimited(message, retry_after=wait, **kw)
    if status in (401, 403):
        return AuthError(message, **kw)
    if status == 404 or kind in ("not_found_error", "model_not_found"):
        return ModelNotFound(message, **kw)
    if status == 503 and "loading" in message.lower():
        return ModelLoading(message, retry_after=wait, **kw)
    if status >= 500:
        return ServerError(message, retry_after=wait, **kw)
    if status in (400, 413, 422) or 400 <= status < 500:
        return BadRequest(message, **kw)
    return ServerError(f"unexpected status {status}: {message}", **kw)


def _error_type(body: Any) -> str | None:
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            value = err.get("type") or err.get("code")
            return str(value) if value is not None else None
    return None


def from_transport(exc: httpx.TransportError, *, provider: str, model: str | None) -> RetryableError:
    """Map an httpx transport failure; the caller raises the result ``from exc``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return ConnectionRefused(f"cannot connect: {text}", provider=provider, model=model)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"timed out: {text}", provider=provider, model=model)
    return ConnectionDropped(f"connection dropped: {text}", provider=provider, model=model)
