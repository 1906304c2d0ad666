"""One logging setup for every ``helix`` process: a handler on the ``helixcode`` logger (and uvicorn's),
human lines or JSON lines, the record's structured fields kept, and secrets masked.

Modules log with the standard library and put what identifies the work in ``extra``::

    log.info("task succeeded", extra={"action": "task.succeeded", "job": job_id, "task": task_id})

Keys are the same everywhere: ``action`` (a stable dotted name), ``job``, ``task`` (the task's id;
``task_key`` its key in the plan), ``worker``, ``provider``, ``model``. :func:`log_fields` binds fields to
everything logged inside a block (the worker binds ``worker``, and ``job``/``task`` around an attempt),
so that a record from deeper down (an LLM call) carries them too.

On a terminal or in a file, one line per record::

    14:02:07 INFO    worker.runtime  task succeeded  action=task.succeeded job=j-4f2a task=17 duration=0.84

With ``logging.json = true``, one JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
``message``, the fields, and ``exc`` (the traceback) when there is one.

Nothing secret is written: passwords in URLs, bearer tokens, ``sk-...`` and ``hx_...`` keys in any text,
and the whole value of a field whose name says it is secret (``api_key``, ``token``, ``password``...).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from helixcode.config import mask_url

if TYPE_CHECKING:
    from helixcode.config import LoggingSettings

__all__ = [
    "HumanFormatter",
    "JsonFormatter",
    "configure_logging",
    "log_fields",
    "record_fields",
    "redact",
    "redact_text",
]

#: The loggers our handler serves; each stops propagation so that nothing prints a record twice
#: (uvicorn's children are listed because uvicorn, or another library, may set them up on their own;
#: OpenTelemetry's say when traces cannot be exported).
LOGGERS = ("helixcode", "uvicorn", "uvicorn.error", "uvicorn.access", "opentelemetry")
MASK = "***"
#: The keys every part of HelixCode uses for the same things, in the order lines show them.
_FIRST = {
    key: i
    for i, key in enumerate(("action", "job", "task", "task_key", "attempt", "worker", "provider", "model"))
}

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:token|api_?key|password|passwd|secret|authorization|credentials?|cookie)(?:_|$)"
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
#: Secrets inside free text, each pattern with what replaces it.
_SECRET_TEXT = (
    # "Authorization: Basic dXNl...", "api_key=abc", "password: 'x'", "token=..."
    (
        re.compile(
            r"(?i)\b(authorization|api[_-]?key|password|passwd|secret|token)"
            r"([\"']?\s*[=:]\s*[\"']?)(?:(?:bearer|basic)\s+)?[^\s\"',;&]+"
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{MASK}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), f"sk-{MASK}"),  # OpenAI and Anthropic keys
    (re.compile(r"\bhx_[A-Za-z0-9_-]{16,}"), f"hx_{MASK}"),  # our API tokens
)

_bound: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "helix_log_fields", default=MappingProxyType({})
)


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this block (and in asyncio tasks started in it);
    a record's own ``extra`` wins over them."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def redact_text(text: str) -> str:
    """``text`` with URL passwords, bearer tokens and API keys masked."""
    if "://" in text:
        text = _URL.sub(lambda m: mask_url(m.group()), text)
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(key: str, value: Any) -> Any:
    """A field's value fit to log: all of it masked when ``key`` names a secret, else its text redacted
    (inside lists and mappings too)."""
    if value is None:
        return None
    if _SECRET_KEY.search(key.lower().replace("-", "_")):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(key, v) for v in value]
    if isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record, redacted: those bound by :func:`log_fields` and its ``extra``
    (which wins), the usual keys first (``action``, ``job``, ``task``...), then the others as given."""
    found = dict(_bound.get())
    found.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_"))
    ordered = sorted(found, key=lambda k: _FIRST.get(k, len(_FIRST)))  # stable: the others keep their order
    return {k: redact(k, found[k]) for k in ordered}


def _short(name: str) -> str:
    return name.removeprefix("helixcode.")


def _plain(value: Any) -> str:
    """A field value on a human line: bare when it is one word, else quoted as JSON."""
    if isinstance(value, str):
        return value if value and not any(c in value for c in ' "=\n\t') else json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool | int) or value is None:
        return json.dumps(value)
    return json.dumps(value, default=str, separators=(",", ":"))


class HumanFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL   logger  message  key=value ...`` (local time), then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {_short(record.name)}  {redact_text(record.getMessage())}"
        fields = record_fields(record)
        if fields:
            line += "  " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + redact_text(self.formatStack(record.stack_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, the fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for key, value in record_fields(record).items():
            out.setdefault(key, value)  # a field never hides the four above
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """Writes to ``stream``, or to whatever ``sys.stderr`` is when a record comes (it may be replaced
    after set-up, by a test runner for one)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send the ``helixcode`` and uvicorn loggers' records at ``settings.level`` or above to one handler
    (``stream``, else standard error), as JSON lines when ``settings.json_format``. Calling it again
    replaces the handler it installed before; other handlers are left alone. Returns the handler."""
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if settings.json_format else HumanFormatter())
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _Handler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return handler
