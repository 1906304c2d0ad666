"""`helix run` end to end: plan, execute on two worker processes, kill one mid-task, merge everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli
from tests.integration.agent.conftest import git, model_missing


def sample_repo(root: Path) -> Path:
    repo = root / "sample"
    (repo / "tests").mkdir(parents=True)
    (repo / "greet.py").write_text('def greet(name):\n    return f"Hello, {name}!"\n')
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_greet.py").write_text(
        "import unittest\nfrom greet import greet\n\n\nclass T(unittest.TestCase):\n"
        "    def test_greet(self):\n        self.assertEqual(greet('a'), 'Hello, a!')\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_run_refuses_a_folder_that_is_not_a_repository(cli: Cli, tmp_path: Path) -> None:
    proc = cli("run", "do things", "--repo", str(tmp_path), "--no-live", check=False)
    assert proc.returncode == 2
    assert "not a git repository" in proc.stderr


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_run_survives_a_killed_worker(cli: Cli, tmp_path: Path) -> None:
    if reason := model_missing():
        pytest.skip(reason)
    repo = sample_repo(tmp_path)
    cli.env.update({"HELIX_TASKS_LEASE_TTL": "4", "HELIX_TASKS_HEARTBEAT_INTERVAL": "1"})
    test = f"{sys.executable} -m unittest -q tests.test_greet"
    run = cli.popen(
        "run", "Add a farewell(name) function to greet.py", "--repo", str(repo), "--workers", "2",
        "--max-subtasks", "2", "--tool-rounds", "4", "--max-tokens", "64", "--chain", "--test-command", test,
        "--no-live",
    )  # fmt: skip
    killed: str | None = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        jobs = cli.json("status")
        if jobs:
            for task in cli.json("tasks", jobs[0]["id"]):
                # A planned subtask that has checkpointed at least one round and is still running.
                if task["parent_key"] and task["status"] == "running" and 0 < task["progress"] < 0.7:
                    pids = {w["id"]: w["pid"] for w in cli.json("workers")}
                    if (pid := pids.get(task["lease_owner"])) is not None:
                        os.kill(pid, signal.SIGKILL)
                        killed = task["key"]
                    break
        time.sleep(0.3)
    out, err = run.communicate(timeout=max(10.0, deadline - time.monotonic()))
    assert killed is not None, f"no task was caught mid-run:\n{out}\n{err}"
    assert run.returncode == 0, f"{out}\n{err}"
    job = cli.json("status")[0]
    assert job["status"] == "succeeded"
    tasks = {t["key"]: t for t in cli.json("tasks", job["id"])}
    assert tasks[killed]["attempts"] >= 2  # reclaimed after the kill
    branch = f"helix/{job['id']}"
    events = cli.json("events", job["id"])
    assert any(e["kind"] == "requeued" and e["task_key"] == killed for e in events)
    for key in tasks:
        tip = git(repo, "rev-parse", f"helix/tasks/{job['id']}/{key}").strip()
        assert (
            subprocess.run(["git", "merge-base", "--is-ancestor", tip, branch], cwd=repo).returncode == 0
        ), key
    resumed = [e for e in events if e["kind"] == "claimed" and e["task_key"] == killed]
    assert len(resumed) >= 2
    assert json.loads(json.dumps(job))["progress"] == 1.0
