"""A newcomer's first hour with the real `helix` script: --version, --help, foreign HELIX_* variables,
finding the database like git, `worker start|list`, `logs`, `wait`, `--exit-status`, `plan-schema`,
and `helix run` on the embedded model. The pure parts these commands rest on are checked at the end."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helixcode import __version__
from tests.acceptance.conftest import HELIX, Cli
from tests.acceptance.test_cli_run import sample_repo
from tests.helpers import free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "demo.yaml"
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

SHELL_PLAN = """\
name: outcomes
tasks:
  - {id: ok, type: building, title: OK, run: {shell: "for i in $(seq 1 30); do echo line $i; done"}}
  - id: bad
    type: testing
    title: Bad
    max_attempts: 2
    backoff_base: 0.05
    backoff_cap: 0.1
    run: {shell: "echo some output; echo boom >&2; exit 3"}
  - {id: after, type: deployment, title: After, depends_on: [bad], run: {shell: "true"}}
"""
GOOD_PLAN = """\
name: fine
tasks:
  - {id: a, type: building, title: A, run: {shell: "echo fine"}}
"""


@pytest.fixture
def newcomer(tmp_path: Path) -> Cli:
    """`helix` as a newcomer runs it: no database configured, in a project folder."""
    project = tmp_path / "project"
    project.mkdir()
    cli = Cli(project, "unused")
    del cli.env["HELIX_DATABASE_URL"]
    return cli


def in_folder(cli: Cli, folder: Path) -> Cli:
    """The same environment, another working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    other = Cli(folder, "unused")
    other.env = dict(cli.env)
    return other


def run_worker(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("worker", "--exit-when-idle", *args, timeout=90)


# -- --version, --help, completion ----------------------------------------------------------------


def test_version_exits_0_and_wins_over_a_command(newcomer: Cli) -> None:
    proc = newcomer("--version")
    assert proc.stdout.strip() == f"helix {__version__}"
    assert newcomer("--version", "status").stdout.strip() == f"helix {__version__}"  # eager
    assert not (newcomer.cwd / ".helix").exists()  # it touched no database


def test_help_groups_commands_in_panels_and_offers_completion(newcomer: Cli) -> None:
    newcomer.env["COLUMNS"] = "120"
    shown = newcomer("--help").stdout
    for panel in ("Work", "Jobs", "Inspect", "Models", "Server and integrations", "Setup", "Inside a task"):
        assert f"\n{panel}:\n" in shown, panel
    assert shown.index("\nWork:") < shown.index("\nJobs:") < shown.index("\nSetup:")
    assert "--install-completion" in shown
    assert "--show-completion" in shown
    assert not re.search(r"^  workers ", shown, re.M)  # the old name still works, but is not advertised
    assert re.search(r"^  worker\s+Run a worker", shown, re.M)
    # Typer names the shell from the process's ancestry (shellingham): run it from bash, as a person
    # would, whatever started the test (pytest-xdist workers have no shell above them).
    shown = subprocess.run(
        ["bash", "-c", f"{HELIX} --show-completion; exit $?"],
        cwd=newcomer.cwd,
        env=newcomer.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "_HELIX_COMPLETE" in shown.stdout


def test_import_of_the_cli_loads_no_heavy_module() -> None:
    heavy = [
        "fastapi",
        "llama_cpp",
        "httpx",
        "sqlalchemy",
        "sqlalchemy.ext.asyncio",
        "alembic",
        "pydantic_settings",
        "rich.table",
        "yaml",
        "helixcode.store.store",
        "helixcode.engine.manager",
        "helixcode.llm.registry",
        "helixcode.domain.plan",
        "textual",
        "helixcode.cli.tui.app",
    ]
    code = f"import sys, helixcode.cli.app; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- environment variables ------------------------------------------------------------------------


@pytest.mark.slow
@SQLITE
def test_foreign_helix_variables_are_ignored_and_misspelt_keys_still_refused(cli: Cli) -> None:
    cli.env.update({"HELIX_RUNTIME": "/usr/lib/helix/runtime", "HELIX_FOO": "1", "HELIX_FOO_BAR": "2"})
    assert cli("status").stdout.startswith("No jobs yet")
    assert cli.json("config", "show")["tasks"]["lease_ttl"] == 30.0
    for name, section in (("HELIX_DATABASE_URLL", "database"), ("HELIX_TASKS_LEASE_TT", "tasks")):
        env = dict(cli.env, **{name: "1"})
        proc = subprocess.run([HELIX, "status"], cwd=cli.cwd, env=env, capture_output=True, text=True)
        assert proc.returncode == 2
        assert f"unknown variable {name}" in proc.stderr
        assert f"in [{section}]" in proc.stderr  # the message is printed as text, not as markup


# -- the database, found like git's repository ----------------------------------------------------


@pytest.mark.slow
def test_the_database_is_found_like_git_and_named_when_new_or_empty(
    newcomer: Cli, write_plan: Callable[[str, str], Path]
) -> None:
    db = newcomer.cwd / ".helix" / "helix.db"
    first = newcomer("status")
    assert f"database: created {db} " in first.stderr
    assert db.is_file()
    again = newcomer("status")
    assert f"database: {db} (no jobs yet)" in again.stderr
    job = json.loads(newcomer("submit", str(write_plan("plan.yaml", GOOD_PLAN)), "--json").stdout)

    deep = in_folder(newcomer, newcomer.cwd / "src" / "pkg")
    assert [j["id"] for j in deep.json("status")] == [job["id"]]
    assert "database:" not in deep("status").stderr  # found, not new, not empty: nothing to say
    assert not (deep.cwd / ".helix").exists()
    shown = deep.json("config", "show")
    assert shown["database"]["url"] == f"sqlite+aiosqlite:///{db}"
    assert shown["workers"]["data_dir"] == str(db.parent)  # beside the database, not under src/pkg

    elsewhere = in_folder(newcomer, newcomer.cwd.parent / "elsewhere")
    assert "database: created" in elsewhere("status").stderr
    assert elsewhere.json("status") == []


@SQLITE
def test_a_configured_database_is_used_as_before_without_a_word(cli: Cli) -> None:
    proc = cli("status")
    assert "database:" not in proc.stderr
    assert not (cli.cwd / ".helix").exists()


# -- worker start | list, and the old names -------------------------------------------------------


@pytest.mark.slow
@SQLITE
def test_worker_start_and_list_with_the_old_names_kept(cli: Cli) -> None:
    assert cli.json("worker", "list") == []
    old = cli("workers", "--json")
    assert json.loads(old.stdout) == []
    assert "`helix workers` is now `helix worker list`" in old.stderr
    run_worker(cli, "--name", "bare")  # `helix worker [OPTIONS]` still starts a worker
    cli("worker", "start", "--exit-when-idle", "--name", "started", timeout=90)
    cli("worker", "--processes", "2", "--exit-when-idle", "--concurrency", "2", "--name", "pool", timeout=90)
    listed = cli.json("worker", "list", "--all")
    assert sorted(w["name"] for w in listed) == ["bare", "pool", "pool", "started"]
    assert {w["status"] for w in listed} == {"stopped"}
    assert cli.json("workers", "--all") == listed
    assert cli.json("worker", "list", "--history", "started")["worker"]["name"] == "started"
    misplaced = cli("worker", "--name", "x", "list", check=False)
    assert misplaced.returncode == 2
    assert "options go after the subcommand" in misplaced.stderr


# -- logs, wait, --exit-status --------------------------------------------------------------------


@pytest.mark.slow
def test_logs_wait_and_exit_status(cli: Cli, write_plan: Callable[[str, str], Path]) -> None:
    job = json.loads(cli("submit", str(write_plan("plan.yaml", SHELL_PLAN)), "--json").stdout)["id"]
    early = cli("wait", job, "--timeout", "0.5", check=False)
    assert early.returncode == 3
    assert "still running after 0.5s" in early.stderr
    assert cli("status", job, "--exit-status", check=False).returncode == 3
    assert cli("logs", job).stdout.strip() == "No task has run yet."

    run_worker(cli, "--concurrency", "2")
    waited = cli("wait", job, check=False)
    assert (waited.returncode, waited.stdout.strip()) == (1, f"Job {job} failed.")
    assert cli("status", job, "--exit-status", check=False).returncode == 1
    assert cli("status", job, "--exit-status", "--json", check=False).returncode == 1
    followed = cli("events", job, "--follow", "--exit-status", check=False)
    assert followed.returncode == 1
    assert "failed" in followed.stdout
    assert cli("events", job, "--follow").returncode == 0  # without the option, as before

    failed = cli("logs", job).stdout  # without TASK: the failed tasks only
    assert "bad failed" in failed
    assert "ok succeeded" not in failed
    assert failed.index("attempt 1: failed") < failed.index("attempt 2: failed")  # newest last
    assert "error: command exited with 3: boom" in failed
    assert "    boom" in failed
    assert "    some output" in failed

    ok = cli("logs", job, "ok", "-n", "3").stdout
    assert "ok succeeded" in ok
    assert "(27 earlier lines)" in ok
    assert "line 28" in ok
    assert "line 30" in ok
    assert "line 27\n" not in ok
    overview = cli("logs", job, "--all").stdout  # every task that ran, a few lines each
    assert "ok succeeded" in overview
    assert "bad failed" in overview
    assert "line 25\n" not in overview
    assert "line 26" in overview
    never = cli("logs", job, "after").stdout
    assert "after upstream_failed" in never
    assert "no finished attempt" in never

    data = cli.json("logs", job, "bad")
    assert [a["attempt"] for a in data[0]["attempts"]] == [1, 2]
    assert data[0]["attempts"][1]["output"]["stderr"] == "boom\n"

    unknown = cli("wait", "nosuchjob", check=False)
    assert unknown.returncode == 2
    assert "no job 'nosuchjob'" in unknown.stderr
    assert cli("logs", job, "ghost", check=False).returncode == 2

    fine = json.loads(cli("submit", str(write_plan("fine.yaml", GOOD_PLAN)), "--json").stdout)["id"]
    run_worker(cli)
    assert cli("wait", fine).stdout.strip() == f"Job {fine} succeeded."
    assert cli("status", fine, "--exit-status").returncode == 0
    assert cli("events", fine, "--follow", "--exit-status").returncode == 0
    assert "    fine" in cli("logs", fine, "a").stdout


@pytest.mark.slow
@SQLITE
def test_logs_and_wait_through_the_server(cli: Cli, write_plan: Callable[[str, str], Path]) -> None:
    job = json.loads(cli("submit", str(write_plan("plan.yaml", SHELL_PLAN)), "--json").stdout)["id"]
    run_worker(cli, "--concurrency", "2")
    token = cli("token", "create", "--role", "viewer").stdout.strip()
    port = free_port()
    server = cli.popen("serve", "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, "helix serve exited"
                assert time.monotonic() < deadline, "helix serve did not start"
                time.sleep(0.1)
        cli.env.pop("HELIX_DATABASE_URL")
        cli.env.update({"HELIX_SERVER": f"http://127.0.0.1:{port}", "HELIX_TOKEN": token})
        assert cli("wait", job[:6], check=False).returncode == 1
        assert cli("status", job, "--exit-status", check=False).returncode == 1
        shown = cli("logs", job).stdout
        assert "bad failed" in shown
        assert "error: command exited with 3: boom" in shown
        assert [a["attempt"] for a in cli.json("logs", job, "bad")[0]["attempts"]] == [1, 2]
        assert cli("wait", "nosuchjob", check=False).returncode == 2
        assert not (cli.cwd / ".helix").exists()  # no local database was needed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


# -- plan-schema ----------------------------------------------------------------------------------


def test_plan_schema_describes_plan_files(newcomer: Cli) -> None:
    import jsonschema
    import yaml

    schema = json.loads(newcomer("plan-schema").stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"tasks"}
    jsonschema.validate(yaml.safe_load(EXAMPLE.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError, match="priorty"):
        jsonschema.validate({"tasks": [{"id": "a", "type": "building", "title": "A", "priorty": 1}]}, schema)
    with pytest.raises(jsonschema.ValidationError, match="bogus"):
        jsonschema.validate({"tasks": [{"id": "a", "type": "bogus", "title": "A"}]}, schema)
    assert not (newcomer.cwd / ".helix").exists()


# -- helix run and helix test: the embedded model's limits, progress lines ------------------------


@pytest.mark.slow
@SQLITE
def test_run_on_the_embedded_model_applies_small_limits_and_says_so(cli: Cli, tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    cli.env["HELIX_AGENT_SANDBOX"] = "off"  # only the submitted options matter here
    run = cli.popen("run", "Add a farewell function", "--repo", str(repo), "--tool-rounds", "5")
    log = cli.cwd.parent / "helix-1.log"
    try:
        deadline = time.monotonic() + 60
        while not (jobs := cli.json("status")):
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        run.send_signal(signal.SIGINT)  # pauses the job and stops the pool
        run.wait(timeout=120)
    said = log.read_text()
    line = "using the embedded model: small limits (--max-subtasks 3 --max-tokens 160 --chain); pass them"
    assert line in said
    plan = next(t for t in cli.json("tasks", jobs[0]["id"]) if t["key"] == "plan")
    agent: dict[str, Any] = plan["run"]["agent"]
    assert {k: agent.get(k) for k in ("max_subtasks", "max_rounds", "max_tokens", "chain")} == {
        "max_subtasks": 3,
        "max_rounds": 5,  # given on the command line: kept
        "max_tokens": 160,
        "chain": True,
    }


@pytest.mark.slow
@pytest.mark.timeout(120)
@SQLITE
def test_a_job_run_without_a_terminal_prints_a_line_per_status_change(
    cli: Cli, tmp_path: Path, sandbox: object
) -> None:
    repo = sample_repo(tmp_path)
    cli.env["COLUMNS"] = "80"
    command = f"{sys.executable} -m unittest -q tests.test_greet"
    proc = cli("test", "--repo", str(repo), "--command", command, "--rounds", "0", timeout=110)
    lines = proc.stdout.splitlines()
    assert any(re.fullmatch(r"\s*\d+s  test\s+running", line) for line in lines), proc.stdout
    assert any(re.fullmatch(r"\s*\d+s  test\s+succeeded after \d+s", line) for line in lines), proc.stdout
    assert max(len(line) for line in lines) <= 80


# -- the pure parts -------------------------------------------------------------------------------


def test_embedded_limits_fill_only_what_was_not_given() -> None:
    from helixcode.cli.run import EMBEDDED_LIMITS, with_embedded_limits

    given = {"max_subtasks": 5, "max_rounds": None, "max_tokens": None, "chain": None}
    options, applied = with_embedded_limits(given)
    assert options == {"max_subtasks": 5, "max_rounds": 2, "max_tokens": 160, "chain": True}
    assert applied == ["--tool-rounds 2", "--max-tokens 160", "--chain"]
    everything = dict.fromkeys(EMBEDDED_LIMITS)
    assert with_embedded_limits(everything)[0] == EMBEDDED_LIMITS
    chosen = {"max_subtasks": 1, "max_rounds": 1, "max_tokens": 64, "chain": False}
    assert with_embedded_limits(chosen) == (chosen, [])


def test_embedded_only_means_no_enabled_provider() -> None:
    from helixcode.cli.run import embedded_only
    from helixcode.config import LLMSettings, ProviderSettings, Settings

    assert embedded_only(Settings())
    assert not embedded_only(Settings(llm=LLMSettings(embedded=False)))
    lab = ProviderSettings(type="ollama", enabled=True)
    assert not embedded_only(Settings(providers={"lab": lab}))
    assert embedded_only(Settings(providers={"lab": lab.model_copy(update={"enabled": False})}))


def _task(key: str, status: str, **extra: Any) -> Any:
    from helixcode.domain.enums import Criticality, Priority, TaskStatus, TaskType
    from helixcode.domain.models import Task

    fields: dict[str, Any] = {
        "id": 1,
        "job_id": "j",
        "key": key,
        "type": TaskType.BUILDING,
        "title": key,
        "description": "",
        "priority": Priority.NORMAL,
        "criticality": Criticality.NORMAL,
        "status": TaskStatus(status),
        "requires": (),
        "depends_on": (),
        "run": {},
        "max_attempts": 3,
        "attempts": 1,
        "failures": 0,
        "lease_losses": 0,
        "timeout": None,
        "progress": 0.0,
        "progress_message": None,
        "parent_key": None,
        "weight": 1.0,
        "created_at": 0.0,
        "ready_at": None,
        "started_at": None,
        "finished_at": None,
        "next_attempt_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": None,
    }
    return Task(**{**fields, **extra})


def test_status_changes_and_their_lines() -> None:
    from helixcode.cli.live import status_changes, status_line

    tasks = [_task("plan", "running"), _task("plan.a", "blocked", parent_key="plan")]
    assert [t.key for t in status_changes(tasks, {})] == ["plan", "plan.a"]
    assert status_changes(tasks, {"plan": "running", "plan.a": "blocked"}) == []
    assert [t.key for t in status_changes(tasks, {"plan": "ready", "plan.a": "blocked"})] == ["plan"]
    done = _task("plan.a", "failed", started_at=10.0, finished_at=22.0, last_error="tests\nfailed")
    assert status_line(done, 35.2).plain == f"   35s  {'plan.a':<20} failed after 12s: tests failed"
    assert status_line(tasks[0], 3).plain == f"    3s  {'plan':<20} running"


def test_exit_codes_by_job_status() -> None:
    from helixcode.cli.outcome import EXIT_NOT_ENDED, exit_code
    from helixcode.domain.enums import JobStatus

    assert [exit_code(s) for s in JobStatus] == [EXIT_NOT_ENDED, EXIT_NOT_ENDED, 0, 1, 1]
    assert [s.value for s in JobStatus] == ["running", "paused", "succeeded", "failed", "cancelled"]


def test_output_sections_and_tails() -> None:
    from helixcode.cli.outcome import output_sections, tail_lines

    assert output_sections({"exit_code": 1, "stdout": "a\n", "stderr": ""}) == [("stdout", "a\n")]
    agent = {"summary": "did it", "commit": "abc", "tests": {"command": "make test", "output": "1 passed"}}
    assert output_sections(agent) == [("summary", "did it"), ("tests: make test", "1 passed")]
    assert output_sections({"conflicts": ["a.py", "b.py"]}) == [("conflicts", "a.py\nb.py")]
    assert tail_lines("1\n2\n3\n", 5) == "1\n2\n3"
    assert tail_lines("1\n2\n3\n", 2) == "... (1 earlier lines)\n2\n3"


def test_the_cli_repeats_the_plan_models_test_round_limit() -> None:
    from helixcode.cli.testcycle import MAX_TEST_ROUNDS as CLI_LIMIT
    from helixcode.domain.plan import MAX_TEST_ROUNDS

    assert CLI_LIMIT == MAX_TEST_ROUNDS
