"""`helix worker` logs its work: a start line, one line per task outcome and a summary, as JSON lines
with ``logging.json``, and no secret in any of them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Cli

API_KEY = "sk-logtest-0123456789abcdef"
DB_PASSWORD = "db-pw-8c1f2e"
STOPPED = r"worker \S+ stopped: 0 succeeded, 0 failed, 0 handed back, 0 abandoned"
PLAN = """\
name: logged
tasks:
  - {id: ok, type: building, title: OK, run: {shell: "true"}}
  - id: leaky
    type: testing
    title: Leaky
    max_attempts: 2
    backoff_base: 0.05
    backoff_cap: 0.1
    run:
      shell: "echo 'push to https://bot:git-pw-77@git.example/r.git refused, key sk-proj-abcdefghijkl' >&2
        ; exit 3"
"""


def with_password(url: str) -> str:
    """A PostgreSQL URL with a password in it (the test server trusts local connections, so it is
    sent and ignored); SQLite URLs have none to hide."""
    return re.sub(r"://([^:@/]+)@", rf"://\1:{DB_PASSWORD}@", url) if url.startswith("postgresql") else url


def records(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_a_worker_logs_json_lines_with_its_fields_and_no_secret(
    cli: Cli, write_plan: Callable[[str, str], Path]
) -> None:
    cli.env["HELIX_DATABASE_URL"] = with_password(cli.env["HELIX_DATABASE_URL"])
    cli.env["LOGTEST_API_KEY"] = API_KEY
    (cli.cwd / "helix.toml").write_text(
        '[providers.lab]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key_env = "LOGTEST_API_KEY"\nmodels = ["lab-model"]\n'
    )
    job = cli.json("submit", str(write_plan("plan.yaml", PLAN)))["id"]
    cli.env["HELIX_LOGGING_JSON"] = "true"
    proc = cli("worker", "--exit-when-idle", "--concurrency", "1")

    for secret in (API_KEY, DB_PASSWORD, "git-pw-77", "abcdefghijkl"):
        assert secret not in proc.stderr + proc.stdout
    found = records(proc.stderr)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for record in found:
        assert {"ts", "level", "logger", "message", "action"} <= record.keys(), record
        by_action.setdefault(record["action"], []).append(record)

    [start] = by_action["worker.start"]
    assert start["level"] == "info"
    assert start["logger"] == "helixcode.worker.runtime"
    assert "model:lab-model" in start["capabilities"]
    assert start["database"] == with_password(cli.env["HELIX_DATABASE_URL"]).replace(DB_PASSWORD, "***")
    worker = start["worker"]

    [ok] = by_action["task.succeeded"]
    assert (ok["job"], ok["task_key"], ok["worker"], ok["attempt"]) == (job, "ok", worker, 1)
    assert isinstance(ok["task"], int)
    assert ok["duration"] >= 0
    [retried] = by_action["task.retried"]
    [failed] = by_action["task.failed"]
    assert (retried["task_key"], failed["task_key"], failed["attempt"]) == ("leaky", "leaky", 2)
    assert failed["error"] == (
        "command exited with 3: push to https://bot:***@git.example/r.git refused, key sk-***"
    )

    [stop] = by_action["worker.stop"]
    assert stop["message"].startswith(f"worker {worker} stopped: 1 succeeded, 2 failed, 0 handed back")
    assert (stop["succeeded"], stop["failed"]) == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_worker_speaks_at_info_unless_a_level_is_configured(cli: Cli) -> None:
    shown = cli("worker", "--exit-when-idle").stderr
    started = r"^\d\d:\d\d:\d\d INFO    worker\.runtime  worker started  action=worker\.start worker="
    assert re.search(started, shown, re.M), shown
    assert re.search(f"{STOPPED} in", shown)
    cli.env["HELIX_LOGGING_LEVEL"] = "warning"
    quiet = cli("worker", "--exit-when-idle").stderr
    assert "worker started" not in quiet
    [summary] = [line for line in quiet.splitlines() if " stopped: " in line]
    assert re.fullmatch(rf"{STOPPED} in \d+\.\ds", summary)
