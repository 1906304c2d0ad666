"""Notifications through the real ``helix`` command: ``helix notify test`` and ``list``, and a worker
killed with -9 while its POST hangs at the receiver, whose notification the next worker delivers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli
from tests.notify_receivers import WebhookReceiver

SECRET = "acceptance-secret"
FAST = {
    "HELIX_TASKS_HEARTBEAT_INTERVAL": "0.3",
    "HELIX_WORKERS_LOST_AFTER": "1.5",
    "HELIX_WORKERS_POLL_INTERVAL": "0.2",
}


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret=SECRET.encode()).start()
    yield receiver
    receiver.stop()


def configure(cli: Cli, url: str, **extra: str) -> None:
    lines = ["[notify.ops]", f'url = "{url}"', 'secret_env = "HOOK_SECRET"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    (cli.cwd / "helix.toml").write_text("\n".join(lines) + "\n")
    cli.env["HOOK_SECRET"] = SECRET
    cli.env.update(FAST)


def wait_until(check: Callable[[], object], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.1)


def test_notify_test_says_whether_the_target_took_it(cli: Cli, hook: WebhookReceiver) -> None:
    configure(cli, hook.url("/hook/t0ken"))
    done = cli("notify", "test", "ops")
    assert "Test notification delivered to [notify.ops]." in done.stdout
    [request] = hook.requests
    assert request.signed
    assert request.json["event"] == "test"
    assert request.json["details"]["target"] == "ops"

    hook.answer(500, path="/hook/t0ken")
    refused = cli("notify", "test", "ops", check=False)
    assert refused.returncode == 1
    assert "not delivered" in refused.stderr
    assert "answered 500" in refused.stderr
    assert "t0ken" not in refused.stderr  # a webhook's path is a credential: never shown

    unknown = cli("notify", "test", "nope", check=False)
    assert unknown.returncode == 2
    assert "no [notify.nope]" in unknown.stderr


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_no_notification(
    cli: Cli, hook: WebhookReceiver, tmp_path: Path
) -> None:
    configure(cli, hook.url(), timeout="2")  # a dead sender's rows are due again 2 x 2 + 5 s later
    hook.answer(200, hold=True)  # the first POST hangs until the test ends
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: nightly\ntasks:\n  - {id: a, type: building, title: a, run: {builtin: noop}}\n")
    procs: list[subprocess.Popen[str]] = []
    try:
        procs.append(cli.popen("worker", "--concurrency", "1"))
        job_id = cli.json("submit", str(plan))["id"]
        wait_until(lambda: hook.requests, 30, "the first worker's POST")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        pending = json.loads(cli("notify", "list", "--json").stdout)
        assert [(n["status"], n["attempts"], n["job_id"]) for n in pending] == [("pending", 1, job_id)]

        procs.append(cli.popen("worker", "--concurrency", "1"))
        wait_until(lambda: len(hook.requests) >= 2, 40, "the second worker's POST")
        wait_until(
            lambda: json.loads(cli("notify", "list", "--json").stdout)[0]["status"] == "delivered",
            20,
            "the row marked delivered",
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    first, second = hook.requests[:2]
    assert first.json["event"] == second.json["event"] == "job.succeeded"
    assert first.json["id"] == second.json["id"]  # the same notification, at least once
    assert first.signed
    assert second.signed
    [row] = json.loads(cli("notify", "list", "--json").stdout)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
