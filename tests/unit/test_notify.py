"""Notifications without I/O: which events are notices, who wants them, the message in each format,
signatures as a receiver checks them, and the ``[notify.NAME]`` settings' validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helixcode.config import NotifySettings, load_settings, mask_target
from helixcode.domain.notify import (
    JOB_OUTCOMES,
    email_text,
    notices_from_events,
    render,
    sign,
    subject,
    summary,
    verify,
    wanted,
)
from helixcode.errors import ConfigError
from helixcode.store.base import event

FAILED = {
    "event": "job.failed",
    "at": "2026-11-30T09:28:21.675Z",
    "job": {
        "id": "70e6a53e4d63",
        "name": "build <prod> & test",
        "status": "failed",
        "tasks": {"succeeded": 3, "failed": 1},
        "failed_tasks": [{"key": "bad", "title": "bad", "error": "command exited with 3:\nboom"}],
    },
    "details": {},
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HELIX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_job_level_outcomes_and_pauses_are_notices_task_events_are_not() -> None:
    rows = [
        event("j", "succeeded", 1.0, task_id=4),
        event("j", "failed", 2.0, task_id=5),
        event("j", "created", 3.0, tasks=2),
        event("j", "succeeded", 4.0),
        event("j", "failed", 5.0),
        event("j", "cancelled", 6.0, tasks=1),
        event("j", "paused", 7.0, reason="by request"),
        event("j", "paused", 8.0, reason="budget reached: $1", budget=True),
        event("j", "resumed", 9.0),
    ]
    found = [(n.kind, n.at, n.job_id) for n in notices_from_events(rows)]
    assert found == [
        ("job.succeeded", 4.0, "j"),
        ("job.failed", 5.0, "j"),
        ("job.cancelled", 6.0, "j"),
        ("job.paused", 7.0, "j"),
        ("budget.reached", 8.0, "j"),
    ]


def test_without_an_events_list_every_job_outcome_is_wanted_but_not_lost_workers() -> None:
    assert all(wanted(kind, None) for kind in JOB_OUTCOMES)
    assert not wanted("worker.lost", None)
    assert wanted("worker.lost", ["worker.lost"])
    assert not wanted("job.succeeded", ["job.failed"])


def test_the_formats() -> None:
    line = summary(FAILED)
    assert line == (
        "HelixCode job 'build <prod> & test' (70e6a53e4d63) failed: 1 failed, 3 succeeded; "
        "task 'bad': command exited with 3: boom"
    )
    assert json.loads(render("json", FAILED)) == FAILED
    assert json.loads(render("slack", FAILED)) == {
        "text": line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    }
    discord = json.loads(render("discord", FAILED))
    assert discord == {"content": line, "allowed_mentions": {"parse": []}}
    assert subject(FAILED) == "[helix] job 'build <prod> & test' failed"
    assert email_text(FAILED).startswith(line + "\n\n{")


@pytest.mark.parametrize(
    ("payload", "line", "title"),
    [
        (
            {"event": "job.succeeded", "job": {"id": "j1", "name": "n", "tasks": {"succeeded": 2}}},
            "HelixCode job 'n' (j1) succeeded: 2 succeeded",
            "[helix] job 'n' succeeded",
        ),
        (
            {"event": "job.cancelled", "job": {"id": "j1", "name": "n"}},
            "HelixCode job 'n' (j1) was cancelled",
            "[helix] job 'n' cancelled",
        ),
        (
            {
                "event": "budget.reached",
                "job": {"id": "j1", "name": "n"},
                "details": {"reason": "budget: $2"},
            },
            "HelixCode job 'n' (j1) paused: budget: $2",
            "[helix] job 'n' paused: budget reached",
        ),
        (
            {
                "event": "worker.lost",
                "worker": {"name": "b1", "host": "h", "last_heartbeat_at": "T", "tasks": [{"id": 1}]},
            },
            "HelixCode worker b1 on h was lost (silent since T); 1 running task(s) go back to the queue",
            "[helix] worker b1 lost",
        ),
    ],
)
def test_each_kind_reads_well(payload: dict[str, Any], line: str, title: str) -> None:
    assert summary(payload) == line
    assert subject(payload) == title


def test_a_signature_verifies_only_with_the_right_key_body_and_a_recent_time() -> None:
    body = render("json", FAILED)
    signature = sign(b"key", 1_700_000_000, body)
    assert signature.startswith("sha256=")
    assert len(signature) == len("sha256=") + 64
    assert verify(b"key", "1700000000", signature, body, now=1_700_000_100)
    assert not verify(b"other", "1700000000", signature, body, now=1_700_000_100)
    assert not verify(b"key", "1700000000", signature, body + b" ", now=1_700_000_100)
    assert not verify(b"key", "1700000001", signature, body, now=1_700_000_100)  # time is signed
    assert not verify(b"key", "1700000000", signature, body, now=1_700_001_000)  # too old: a replay
    assert not verify(b"key", "soon", signature, body, now=1_700_000_100)


def test_the_readme_snippet_verifies_a_signature() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("<!-- verify-snippet -->")[1].split("```python")[1].split("```")[0]
    scope: dict[str, Any] = {}
    exec(snippet, scope)
    body = render("json", FAILED)
    now = 1_700_000_000
    headers = {"X-Helix-Timestamp": str(now), "X-Helix-Signature": sign(b"s3cret", now, body)}
    assert scope["verify"](b"s3cret", headers, body, now=now + 10)
    assert not scope["verify"](b"wrong", headers, body, now=now + 10)
    assert not scope["verify"](b"s3cret", headers, body, now=now + 3600)


def _load(tmp_path: Path, toml: str) -> Any:
    (tmp_path / "helix.toml").write_text(toml)
    return load_settings(cwd=tmp_path)


def test_targets_load_from_the_file(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
[notify.ops]
url = "https://hooks.slack.com/services/T0/B0/XYZ"
format = "slack"
events = ["job.failed", "budget.reached"]

[notify.audit]
url_env = "AUDIT_HOOK"
secret_env = "AUDIT_SECRET"

[notify.mail]
url = "smtp://alerts@mail.example.com:587"
to = ["oncall@example.com"]
from = "helix@example.com"
password_env = "SMTP_PASSWORD"
""",
    )
    ops, audit, mail = settings.notify["ops"], settings.notify["audit"], settings.notify["mail"]
    assert (ops.format, ops.events, ops.max_attempts) == ("slack", ["job.failed", "budget.reached"], 20)
    assert audit.format == "json"
    assert audit.events is None
    assert (mail.sender, mail.to) == ("helix@example.com", ["oncall@example.com"])
    shown = settings.masked()["notify"]
    assert shown["ops"]["url"] == "https://hooks.slack.com/***"
    assert shown["mail"]["url"] == "smtp://alerts@mail.example.com:587"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('url = "ftp://x"', r"'notify\.ops\.url': Value error, give an http\(s\):// webhook URL"),
        ('url = "https://x"\nformat = "teams"', r"'notify\.ops\.format': Input should be 'json'"),
        ('url = "https://x"\nevents = ["job.done"]', r"'notify\.ops\.events\.0': Input should be"),
        ('url = "https://x"\nevents = []', r"'notify\.ops\.events': List should have at least 1 item"),
        ('url = "https://x"\nsecrt = "a"', r"unknown key 'notify\.ops\.secrt'"),
        ('format = "json"', r"'notify\.ops': Value error, give exactly one of 'url' or 'url_env'"),
        ('url = "https://x"\nsecret = "a"\nsecret_env = "B"', r"give 'secret' or 'secret_env', not both"),
        ('url = "smtp://mail"\nto = ["a@b"]', r"needs 'to' \(a list of addresses\) and 'from'"),
        ('url = "smtp://m"\nto = ["a@b"]\nfrom = "c@d"\nformat = "slack"', r"format 'slack' is for webhooks"),
        ('url = "https://x"\nto = ["a@b"]', r"'to' is for email \(an smtp:// url\)"),
        ('url = "https://x"\ntimeout = 0', r"'notify\.ops\.timeout': Input should be greater than 0"),
    ],
)
def test_a_bad_target_is_an_error_naming_its_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, f"[notify.ops]\n{toml}\n")


def test_a_bad_target_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[notify\.has space\]: a name is up to 64"):
        _load(tmp_path, '[notify."has space"]\nurl = "https://x"\n')


def test_secrets_and_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    target = NotifySettings(url_env="HOOK_URL", secret_env="HOOK_SECRET")
    with pytest.raises(ConfigError, match="url_env: the environment variable HOOK_URL is not set"):
        target.target_url()
    monkeypatch.setenv("HOOK_URL", "smtp://mail")
    with pytest.raises(ConfigError, match="url_env HOOK_URL: an smtp:// target needs 'to'"):
        target.target_url()
    monkeypatch.setenv("HOOK_URL", "https://example.com/hook/abc")
    assert target.target_url() == "https://example.com/hook/abc"
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        target.secret_key()
    monkeypatch.setenv("HOOK_SECRET", "k")
    assert target.secret_key() == b"k"
    assert NotifySettings(url="https://x", secret="inline").secret_key() == b"inline"  # type: ignore[arg-type]


def test_mask_target() -> None:
    assert mask_target("https://discord.com/api/webhooks/1/TOKEN?wait=true") == "https://discord.com/***"
    assert mask_target("https://user:pw@ci.example.com/hook") == "https://ci.example.com/***"
    assert mask_target("https://ci.example.com") == "https://ci.example.com"
    assert mask_target("smtp://alerts:pw@mail:587") == "smtp://alerts:***@mail:587"
