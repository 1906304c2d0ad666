from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli

EXAMPLE = Path(__file__).parents[2] / "examples" / "demo.yaml"

CYCLE = """
name: loop
tasks:
  - {id: a, type: design, title: A, depends_on: [c]}
  - {id: b, type: building, title: B, depends_on: [a]}
  - {id: c, type: testing, title: C, depends_on: [b]}
"""


@pytest.mark.slow
def test_submit_then_status_and_tasks(cli: Cli) -> None:
    job = cli.json("submit", str(EXAMPLE))
    assert job["name"] == "demo"
    assert job["status"] == "running"
    summary = cli.json("status", job["id"][:5])
    assert summary["tasks"] == 7
    assert summary["counts"] == {"blocked": 6, "ready": 1}
    listed = cli.json("tasks", job["id"])
    assert [t["key"] for t in listed] == [
        "plan",
        "design",
        "build-core",
        "build-cli",
        "test",
        "diagram",
        "deploy",
    ]
    table = cli("tasks", job["id"]).stdout
    assert "build-core" in table
    assert "blocked" in table
    jobs = cli.json("status")
    assert [j["id"] for j in jobs] == [job["id"]]
    events = cli.json("events", job["id"])
    assert [e["kind"] for e in events] == ["created", "ready"]


@pytest.mark.slow
def test_a_cycle_is_refused_with_the_cycle_printed_and_nothing_written(
    cli: Cli, write_plan: Callable[[str, str], Path]
) -> None:
    proc = cli("submit", str(write_plan("loop.yaml", CYCLE)), check=False)
    assert proc.returncode == 2
    assert "dependency cycle: a -> c -> b -> a" in proc.stderr
    assert cli.json("status") == []


@pytest.mark.slow
def test_invalid_plans_exit_2_naming_task_and_fault(cli: Cli, write_plan: Callable[[str, str], Path]) -> None:
    bad = write_plan(
        "bad.yaml",
        "tasks:\n  - {id: build, type: building, title: B, priority: urgent}\n"
        "  - {id: test, type: testing, title: T, depends_on: [ghost]}\n",
    )
    proc = cli("submit", str(bad), check=False)
    assert proc.returncode == 2
    assert "task 'build' (tasks[0]): priority" in proc.stderr
    missing = cli("submit", "nope.yaml", check=False)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    unknown_dep = write_plan(
        "dep.yaml", "tasks:\n  - {id: test, type: testing, title: T, depends_on: [ghost]}\n"
    )
    proc = cli("submit", str(unknown_dep), check=False)
    assert proc.returncode == 2
    assert "task 'test': depends on unknown task 'ghost'" in proc.stderr
    assert cli.json("status") == []


@pytest.mark.slow
def test_unknown_job_and_bad_config(cli: Cli) -> None:
    proc = cli("status", "nosuchjob", check=False)
    assert proc.returncode == 2
    assert "no job 'nosuchjob'" in proc.stderr
    (cli.cwd / "helix.toml").write_text("[tasks]\nretries = 3\n")
    proc = cli("config", "show", check=False)
    assert proc.returncode == 2
    assert "helix.toml: unknown key 'tasks.retries'" in proc.stderr


def test_config_show_masks_secrets(cli: Cli) -> None:
    cli.env["HELIX_DATABASE_URL"] = "postgresql+psycopg://me:hunter2@db.example/helix"
    shown = cli("config", "show").stdout
    assert "hunter2" not in shown
    assert "me:***@db.example" in shown
    data = cli.json("config", "show")
    assert data["tasks"]["max_attempts"] == 3


@pytest.mark.slow
def test_db_upgrade_and_current(cli: Cli) -> None:
    from helixcode.store.migrate import head_revision

    head = head_revision()
    assert f"revision {head}" in cli("db", "upgrade").stdout
    assert f"revision {head}; head {head}" in cli("db", "current").stdout
