"""The logging set-up (``helixcode.logsetup``): human and JSON lines with the records' fields, the level,
idempotence, uvicorn's loggers, and secrets that never reach the output."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from helixcode.config import LoggingSettings
from helixcode.logsetup import LOGGERS, configure_logging, log_fields, redact, redact_text

log = logging.getLogger("helixcode.worker.runtime")


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """Each test configures the real loggers; put them back as they were."""
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def setup(level: str = "info", *, json_format: bool = False) -> io.StringIO:
    out = io.StringIO()
    configure_logging(LoggingSettings.model_validate({"level": level, "json": json_format}), stream=out)
    return out


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_human_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    out = setup()
    log.info(
        "task %s succeeded",
        "build",
        extra={"action": "task.succeeded", "job": "j-1", "task": 7, "worker": "w-1", "note": "two words"},
    )
    line = out.getvalue().rstrip("\n")
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    worker\.runtime  task build succeeded  "
        r'action=task\.succeeded job=j-1 task=7 worker=w-1 note="two words"',
        line,
    ), line


def test_a_json_line_is_one_object_with_the_fields() -> None:
    out = setup(json_format=True)
    log.warning("api key variable not set", extra={"action": "llm.config", "provider": "openai"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("executor crashed", extra={"action": "task.crash", "job": "j-1", "task": 3})
    first, second = json_lines(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("ts"))
    assert first == {
        "level": "warning",
        "logger": "helixcode.worker.runtime",
        "message": "api key variable not set",
        "action": "llm.config",
        "provider": "openai",
    }
    assert (second["action"], second["job"], second["task"]) == ("task.crash", "j-1", 3)
    assert second["exc"].startswith("Traceback")
    assert "ValueError: boom" in second["exc"]


def test_fields_bound_to_a_block_reach_every_record_in_it_and_extra_wins() -> None:
    out = setup(json_format=True)
    with log_fields(worker="w-1", job="j-1"):
        logging.getLogger("helixcode.llm.manager").info("llm call", extra={"job": "j-2", "model": "m"})
    log.info("outside")
    inside, outside = json_lines(out)
    assert (inside["worker"], inside["job"], inside["model"]) == ("w-1", "j-2", "m")
    assert "worker" not in outside


def test_the_level_is_honoured() -> None:
    out = setup("warning")
    log.info("hidden")
    log.debug("hidden too")
    log.warning("shown")
    assert [line.split("  ")[-1] for line in out.getvalue().splitlines()] == ["shown"]
    out = setup("debug")
    log.debug("now shown")
    assert "now shown" in out.getvalue()


def test_configuring_twice_replaces_the_handler_and_keeps_foreign_ones() -> None:
    foreign = logging.NullHandler()
    logging.getLogger("helixcode").addHandler(foreign)
    first = setup()
    second = setup(json_format=True)
    log.warning("once")
    assert first.getvalue() == ""
    assert [r["message"] for r in json_lines(second)] == ["once"]
    handlers = logging.getLogger("helixcode").handlers
    assert foreign in handlers
    assert len(handlers) == 2


def test_uvicorn_logs_through_the_same_handler() -> None:
    out = setup(json_format=True)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42, extra={"color_message": "x"})
    [line] = json_lines(out)
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == "Started server process [42]"
    assert "color_message" not in line


def test_secrets_never_reach_the_output() -> None:
    out = setup(json_format=True)
    log.warning(
        "cannot reach postgresql://helix:hunter2@db.local/helix with Authorization: Bearer abc.def.ghi123",
        extra={
            "action": "test.secret",
            "api_key": "sk-live-0123456789abcdef",
            "database": "postgresql+psycopg://helix:hunter2@db.local:5432/helix",
            "lease_token": "0f3a9c1b2d",
            "headers": {"Authorization": "Bearer xyz123456789", "Accept": "json"},
            "prompt_tokens": 12,
        },
    )
    try:
        raise RuntimeError("used key sk-proj-abcdefghijklmnop and password=hunter2")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    secrets = ("hunter2", "sk-live-0123", "abc.def.ghi123", "0f3a9c1b2d", "xyz123456789", "abcdefghijklm")
    for secret in secrets:
        assert secret not in text
    first, second = json_lines(out)
    assert first["message"] == ("cannot reach postgresql://helix:***@db.local/helix with Authorization: ***")
    assert first["api_key"] == "***"
    assert first["database"] == "postgresql+psycopg://helix:***@db.local:5432/helix"
    assert first["headers"] == {"Authorization": "***", "Accept": "json"}
    assert first["prompt_tokens"] == 12, "a count of tokens is not a secret"
    assert "sk-***" in second["exc"]
    assert "password=***" in second["exc"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("git fetch https://u:pa55@host/r.git failed", "git fetch https://u:***@host/r.git failed"),
        ("https://host/r.git", "https://host/r.git"),
        ("header bearer hx_abcdefghijklmnopqrstuv", "header bearer ***"),
        ("token hx_abcdefghijklmnopqrstuvwxyz0123", "token hx_***"),
        ('{"api_key": "abc"}', '{"api_key": "***"}'),
        ("prompt_tokens=12 max_tokens=5", "prompt_tokens=12 max_tokens=5"),
        ("task-12345678 on worker host-1-abc", "task-12345678 on worker host-1-abc"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_a_field() -> None:
    assert redact("password", "x") == "***"
    assert redact("Client-Secret", "x") == "***"
    assert redact("task_key", "build") == "build"
    assert redact("urls", ["https://a:b@h/"]) == ["https://a:***@h/"]
    assert redact("token", None) is None
