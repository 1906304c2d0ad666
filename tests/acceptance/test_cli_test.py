"""`helix test` end to end: the CLI submits the cycle, runs it on its own worker pool, and says how it
ended (the exit code, the counts, the command)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli
from tests.integration.agent.conftest import git, model_missing
from tests.run_counter import RunCounter

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

TESTS = (
    "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_zero():\n    assert add(0, 0) == 0\n"
)


def tiny_repo(root: Path, body: str) -> Path:
    repo = root / "tiny"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(f"def add(a, b):\n    return {body}\n")
    (repo / "tests" / "test_calc.py").write_text(TESTS)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cli_test_passing_tests_exit_0_with_the_counts(cli: Cli, tmp_path: Path) -> None:
    repo = tiny_repo(tmp_path, "a + b")
    cli.env["COLUMNS"] = "80"
    proc = cli("test", "--repo", str(repo), "--debug-rounds", "1", timeout=80)  # live view, in 80 columns
    assert "tests pass in round 1 (2 passed)" in proc.stdout
    assert "-m pytest -q (detected)" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80, proc.stdout
    [job] = cli.json("status")
    assert job["status"] == "succeeded"
    assert [t["key"] for t in cli.json("tasks", job["id"])] == ["test"]
    assert not (repo / ".pytest_cache").exists()  # the user's checkout is untouched


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cli_test_fails_after_its_rounds_naming_the_command(cli: Cli, tmp_path: Path) -> None:
    if reason := model_missing():
        pytest.skip(reason)
    repo = tiny_repo(tmp_path, "a - b")
    command = f"{sys.executable} -m pytest -q -p no:cacheprovider tests"
    proc = cli(
        "test", "--repo", str(repo), "--command", command, "--debug-rounds", "1", "--max-rounds", "1",
        "--max-tokens", "48", "--no-live", check=False, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    message = f"tests still failing after 1 debugging round (1 failed, 1 passed): {command}"
    assert message in proc.stdout.replace("\n", "")
    [job] = cli.json("status")
    assert job["status"] == "failed"
    tasks = {t["key"]: t for t in cli.json("tasks", job["id"])}
    assert {k: t["status"] for k, t in tasks.items()} == {
        "test": "failed",
        "test.fix1": "succeeded",
        "test.test2": "failed",
    }
    assert tasks["test.fix1"]["type"] == "debugging"
    events = cli.json("events", job["id"])
    assert any(e["kind"] == "expanded" and e["task_key"] == "test" for e in events)


@pytest.mark.slow
def test_cli_test_without_a_test_command_is_bad_input(cli: Cli, tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    (repo / "README.md").write_text("nothing to test\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    proc = cli("test", "--repo", str(repo), "--no-live", check=False)
    assert proc.returncode == 2
    assert "no test command found" in proc.stderr
    assert "--command" in proc.stderr
    assert cli.json("status") == []  # nothing was submitted


ROUNDS = (  # the tests run in the sandbox, which sees no host file: they count their runs over the network
    "import time\n{counter}\n\ndef test_fails_first_then_passes():\n"
    "    if n == 2:\n        time.sleep(15)  # the second run: its worker is killed meanwhile\n"
    "    assert n >= 2, 'the first run fails'\n"
)


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cli_test_a_killed_worker_loses_no_round(cli: Cli, tmp_path: Path, run_counter: RunCounter) -> None:
    if reason := model_missing():
        pytest.skip(reason)
    repo = tiny_repo(tmp_path, "a + b")
    (repo / "tests" / "test_rounds.py").write_text(ROUNDS.format(counter=run_counter.snippet()))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a test that fails once")
    cli.env.update(
        {"HELIX_TASKS_LEASE_TTL": "4", "HELIX_TASKS_HEARTBEAT_INTERVAL": "1", "HELIX_AGENT_NETWORK": "true"}
    )
    run = cli.popen(
        "test",
        "--repo",
        str(repo),
        "--debug-rounds",
        "2",
        "--max-rounds",
        "1",
        "--max-tokens",
        "48",
        "--no-live",
    )
    killed = False
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline and run.poll() is None:
        jobs = cli.json("status")
        tasks = {t["key"]: t for t in cli.json("tasks", jobs[0]["id"])} if jobs else {}
        retest = tasks.get("test.test2", {})
        if retest.get("status") == "running" and "round 2" in (retest.get("progress_message") or ""):
            pid = {w["id"]: w["pid"] for w in cli.json("workers")}[retest["lease_owner"]]
            os.kill(pid, signal.SIGKILL)  # the pool's only worker, in the middle of the round-2 tests
            killed = True
        time.sleep(0.3)
    run.wait(timeout=max(10.0, deadline - time.monotonic()))
    log = (cli.cwd.parent / "helix-1.log").read_text()
    assert killed, log
    assert run.returncode == 0, log
    assert "restarted them" in log
    assert "tests pass in round 2" in log
    [job] = cli.json("status")
    tasks = {t["key"]: t for t in cli.json("tasks", job["id"])}
    assert {k: t["status"] for k, t in tasks.items()} == {
        "test": "succeeded",
        "test.fix1": "succeeded",
        "test.test2": "succeeded",
    }  # the round-2 run was taken over, not counted as a failure: no fix2, no test3
    assert tasks["test.test2"]["attempts"] == 2
    assert tasks["test.test2"]["run"]["tests"]["round"] == 2
    events = cli.json("events", job["id"])
    assert any(e["kind"] == "requeued" and e["task_key"] == "test.test2" for e in events)
