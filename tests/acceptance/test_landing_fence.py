"""Git landings are fenced like database writes: a worker that lost its lease never moves helix/<job>.

The zombie is a real ``helix worker`` frozen with SIGSTOP at the worst moment: its agent task has
finished and is about to land (it waits for the repository's lock, which the test holds). Past the
lease TTL a successor resumes the task from its checkpoint and lands it. When the zombie is thawed it
gets the lock and tries to land: the fence (a lease renewal in the database) refuses, the job branch
keeps the successor's tip, and the refusal is a ``landing_refused`` event.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.acceptance.conftest import Cli
from tests.acceptance.test_sandbox_escapes import make_repo
from tests.integration.agent.conftest import git
from tests.scripted_model import ScriptedModel, provider_toml

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)]


def waiting_for_lock(pid: int) -> bool:
    """Whether ``pid`` is blocked on a file lock (a ``->`` line of /proc/locks names it)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields:
            return True
    return False


def stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` has stopped (SIGSTOP is delivered to each thread in turn)."""
    states = [
        (t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in Path(f"/proc/{pid}/task").iterdir()
    ]
    return all(state in "tT" for state in states)


def poll(what: str, check: object, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("sandbox")
def test_a_zombie_worker_cannot_land_after_its_successor(cli: Cli, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    model = ScriptedModel().start()
    held: list[IO[str]] = []
    lock_taken = threading.Event()

    def hold_the_lock(marker: str, turn: int) -> None:
        """When the zombie is told to finish, take the repository's lock so its landing must wait."""
        if marker == "FENCE" and turn == 1 and not held:
            handle = (repo / ".git" / "helix.lock").open("a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            held.append(handle)
            lock_taken.set()

    model.hook = hold_the_lock
    model.script("FENCE", [("write_file", {"path": "work.txt", "content": "done\n"})])
    (cli.cwd / "helix.toml").write_text(provider_toml(model))
    cli.env.update({"HELIX_TASKS_LEASE_TTL": "3", "HELIX_TASKS_HEARTBEAT_INTERVAL": "1"})
    plan = {"workdir": str(repo), "tasks": [{"id": "fence", "type": "building", "title": "FENCE"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    job = cli.json("submit", str(tmp_path / "plan.json"))["id"]
    zombie = cli.popen("worker", "--name", "zombie")
    successor = None
    try:
        poll("the zombie to reach its landing", lock_taken.is_set)
        poll("the zombie to wait for the lock", lambda: waiting_for_lock(zombie.pid))
        os.kill(zombie.pid, signal.SIGSTOP)
        poll("the zombie to stop", lambda: stopped(zombie.pid))
        time.sleep(0.2)  # its waiting thread has left the lock's queue: the lock goes to the successor
        fcntl.flock(held[0], fcntl.LOCK_UN)
        held[0].close()
        time.sleep(4)  # past the lease TTL
        successor = cli.popen("worker", "--name", "successor")
        poll("the successor to land the task", lambda: cli.json("status", job)["status"] == "succeeded")
        tip = git(repo, "rev-parse", f"helix/{job}").strip()
        os.kill(zombie.pid, signal.SIGCONT)

        def refused() -> bool:
            return any(e["kind"] == "landing_refused" for e in cli.json("events", job))

        poll("the zombie's landing to be refused", refused, timeout=30)
    finally:
        for proc in (zombie, successor):
            if proc is not None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
                proc.wait(30)
        model.stop()
    assert git(repo, "rev-parse", f"helix/{job}").strip() == tip
    [event] = [e for e in cli.json("events", job) if e["kind"] == "landing_refused"]
    assert event["attempt"] == 1
    assert "lost its lease" in event["details"]["reason"]
    claims = [e for e in cli.json("events", job) if e["kind"] == "claimed"]
    assert [c["attempt"] for c in claims] == [1, 2]
    assert (repo / ".git").is_dir()
    assert "done" in git(repo, "show", f"helix/{job}:work.txt")
