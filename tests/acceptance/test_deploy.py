"""The deployment files, run: their own tools (hadolint, ``docker compose config``, ``systemd-analyze
verify``), the image where a container runtime answers, and, everywhere, the very commands compose
and the systemd unit start, read from those files and run with the real CLI against a fresh database.

The linters run when present (``make deploy-tools`` installs them; CI sets
``HELIXTEST_REQUIRE_DEPLOY_TOOLS=1`` so that they fail instead of skipping). Each is first shown a
broken file, so a linter that reports nothing (or drops its exit code) cannot pass for a clean one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

import helixcode
from helixcode.agent.sandbox import CONTAINER_FLAGS, Probe
from helixcode.config import WorkersSettings
from tests.acceptance.conftest import HELIX, Cli
from tests.conftest import sqlite_url
from tests.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    UNIT,
    compose,
    env_file,
    service_argv,
    unit,
    unit_argv,
)
from tests.helpers import free_port

REQUIRE_TOOLS = os.environ.get("HELIXTEST_REQUIRE_DEPLOY_TOOLS") == "1"
TOOL_DIRS = (Path(sys.executable).parent, ROOT / ".venv-tools" / "bin")
DRAIN_TIMEOUT = WorkersSettings().drain_timeout
SLOW_PLAN = """\
name: drain
tasks:
  - {id: slow, type: building, title: Slow, run: {builtin: sleep, seconds: 3}}
"""


def missing(what: str) -> NoReturn:
    message = f"{what}; `make deploy-tools` installs the linters"
    if REQUIRE_TOOLS:
        pytest.fail(f"HELIXTEST_REQUIRE_DEPLOY_TOOLS=1 but {message}")
    pytest.skip(message)


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((str(d / name) for d in TOOL_DIRS if os.access(d / name, os.X_OK)), None)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def compose_command() -> list[str] | None:
    """Docker Compose v2: the docker CLI's plugin, or the standalone binary (no daemon needed)."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    for name in ("docker-compose-v2", "docker-compose"):
        path = tool(name)
        if path and re.search(r"\bv2\.", run([path, "version"]).stdout):
            return [path]
    return None


# -- the files' own tools --------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = tool("hadolint") or missing("hadolint is not installed")
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert run([hadolint, "--no-color", str(broken)]).returncode != 0, "hadolint reports nothing"
    linted = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_compose_config_accepts_the_stack(tmp_path: Path) -> None:
    command = compose_command() or missing("no Docker Compose v2 here (`docker compose` or docker-compose)")
    no_env = tmp_path / "empty.env"  # not a developer's own .env beside compose.yaml
    no_env.write_text("")
    base = [*command, "--env-file", str(no_env), "-f", str(COMPOSE), "config"]
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    unset = run([*base, "-q"], env=env)
    assert unset.returncode != 0, "compose config reports nothing"
    assert "set POSTGRES_PASSWORD in .env" in unset.stderr
    env["POSTGRES_PASSWORD"] = "not-a-secret"
    checked = run([*base, "-q"], env=env)
    assert checked.returncode == 0, checked.stderr
    normalized = json.loads(run([*base, "--format", "json"], env=env).stdout)["services"]
    assert normalized["worker"]["deploy"]["replicas"] == 2
    assert normalized["worker"]["stop_grace_period"] == compose()["services"]["worker"]["stop_grace_period"]
    assert normalized["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze") or missing("systemd-analyze is not installed")
    # verify checks that ExecStart's program exists: the CLI under test stands in for /opt/helix.
    text = UNIT.read_text().replace(unit_argv()[0], HELIX)
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    broken.write_text(text.replace("KillMode=mixed", "KillMode=gently"))
    said = run([analyze, "verify", str(broken)])
    assert "kill mode" in said.stdout + said.stderr, "systemd-analyze verify reports nothing"
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    verified = run([analyze, "verify", str(copy)])
    assert verified.returncode == 0
    assert not (verified.stdout + verified.stderr).strip()  # it warns without failing: no warning


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_image_builds_and_runs_where_a_container_runtime_answers(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or run([docker, "info"]).returncode != 0:
        pytest.skip(
            "no container runtime here (`docker info` fails): the image is built only where one answers"
        )
    tag = f"helixcode-test:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        [docker, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=3000
    )
    assert built.returncode == 0, built.stderr[-4000:]
    try:
        assert (
            run([docker, "run", "--rm", tag, "--version"]).stdout.strip() == f"helix {helixcode.__version__}"
        )
        assert run([docker, "run", "--rm", "--entrypoint", "id", tag, "-u"]).stdout.strip() != "0"
        flags = [*CONTAINER_FLAGS.split(), "-e", "HELIX_DATABASE_URL=sqlite+aiosqlite:////tmp/h.db"]
        worker = run([docker, "run", "--rm", *flags, tag, "worker", "start", "--exit-when-idle"])
        assert worker.returncode == 0, worker.stderr
        assert "sandbox: bubblewrap" in worker.stderr
    finally:
        run([docker, "rmi", "-f", tag])


# -- the files' commands, with the real CLI outside a container ------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema at all, as PostgreSQL is when compose first starts it."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "helix.db")
    return str(request.getfixturevalue("empty_pg_database"))


def without_helix(argv: list[str]) -> list[str]:
    assert Path(argv[0]).name == "helix", argv
    return argv[1:]


def with_option(args: list[str], option: str, value: str) -> list[str]:
    index = args.index(option)
    return [*args[: index + 1], value, *args[index + 2 :]]


def last_log(cli: Cli) -> str:
    return sorted(cli.cwd.parent.glob("helix-*.log"))[-1].read_text()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_the_migrate_service_upgrades_an_empty_database_and_may_run_again(
    empty_db: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cli = Cli(work, empty_db)
    args = without_helix(service_argv("migrate"))
    for _ in range(2):  # every `docker compose up` runs it: a current schema is no error
        assert "Database at revision" in cli(*args).stdout
    assert re.search(r"revision (\w+); head \1", cli("db", "current").stdout)


@pytest.mark.slow
def test_the_api_service_passes_its_healthcheck_and_stops_on_sigterm(cli: Cli) -> None:
    api = compose()["services"]["api"]
    args = without_helix(service_argv("api"))
    composed_port = args[args.index("--port") + 1]
    port = str(free_port())
    # Only the values change: all interfaces of a shared machine are not this test's to listen on.
    args = with_option(with_option(args, "--host", "127.0.0.1"), "--port", port)
    _cmd, program, flag, code = api["healthcheck"]["test"]
    check = [
        sys.executable if program == "python" else program,
        flag,
        code.replace(f":{composed_port}/", f":{port}/"),
    ]
    assert run(check).returncode != 0, "the healthcheck passes with no server"
    cli.env["HELIX_LOGGING_LEVEL"] = "info"  # uvicorn says when it has shut down
    server = cli.popen(*args)
    try:
        wait_for(lambda: server.poll() is None and run(check).returncode == 0, "the API's healthcheck")
    finally:
        server.send_signal(signal.SIGTERM)
        code_at_exit = server.wait(15)
    # uvicorn shuts down gracefully, then raises the signal again for its parent to see (Docker: 143;
    # systemd counts SIGTERM as a clean exit).
    assert code_at_exit in {0, -signal.SIGTERM}
    assert "Application shutdown complete." in last_log(cli)
    assert run(check).returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("source", ["compose", "systemd"])
def test_the_worker_drains_on_sigterm(cli: Cli, write_plan: Callable[[str, str], Path], source: str) -> None:
    """``docker compose stop`` and ``systemctl stop`` both send SIGTERM: a running task finishes
    within the drain, the worker exits 0 (so Restart=on-failure leaves it stopped)."""
    if source == "compose":
        args = without_helix(service_argv("worker"))
        env = dict(compose()["services"]["worker"]["environment"])
    else:
        args = without_helix(unit_argv())
        env = env_file("\n".join(unit()["Service"].get("Environment", "").split()))
        env = {k: v.replace("/var/lib/helix", str(cli.cwd)) for k, v in env.items()}
    env.pop("HELIX_DATABASE_URL", None)  # the test's database
    cli.env.update(env)
    job = json.loads(cli("submit", str(write_plan("plan.yaml", SLOW_PLAN)), "--json").stdout)["id"]
    worker = cli.popen(*args)
    try:
        wait_for(lambda: cli.json("tasks", job)[0]["status"] == "running", "the task to start")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(DRAIN_TIMEOUT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    log = last_log(cli)
    assert code == 0, log
    assert cli.json("status", job)["status"] == "succeeded", "finished during the drain, not handed back"
    assert re.search(r"^worker \S+: sandbox: ", log, re.MULTILINE), log
    if env.get("HELIX_LOGGING_JSON") == "true":
        actions = [json.loads(line)["action"] for line in log.splitlines() if line.startswith("{")]
        assert actions[0] == "worker.start"
        assert actions[-1] == "worker.stop"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_settings_the_files_set_are_known_settings(cli: Cli, tmp_path: Path) -> None:
    """An unknown HELIX_ variable is a config error: every one the files set or suggest must parse."""
    config = tmp_path / "helix.toml"
    config.write_text("")
    suggested = dict(re.findall(r"^# (HELIX_\w+)=(\S+)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert {"HELIX_WORKERS_CONCURRENCY", "HELIX_WORKERS_DRAIN_TIMEOUT", "HELIX_CONFIG"} <= set(suggested)
    suggested["HELIX_CONFIG"] = str(config)
    set_by_unit = env_file("\n".join(unit()["Service"].get("Environment", "").split()))
    for name in ("api", "worker"):
        env = {**compose()["services"][name]["environment"], **suggested, **set_by_unit}
        env.pop("HELIX_DATABASE_URL")
        cli.env.update(env)
        shown = cli("config", "show", "--json")
        assert json.loads(shown.stdout)["workers"]["concurrency"] == int(
            suggested["HELIX_WORKERS_CONCURRENCY"]
        )


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_worker_in_a_container_without_the_flags_is_told_them(cli: Cli, sandbox: Probe) -> None:
    """Docker covers parts of /proc (kcore, kmsg, ...); the kernel then refuses a user namespace a new
    /proc, and bwrap fails. Here the same cover, in a mount namespace of its own, as root."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/proc/kmsg").exists():
        pytest.skip("needs root and unshare to cover /proc/kmsg as a container runtime does")
    cover = 'mount --bind /dev/null /proc/kmsg && exec "$0" "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", cover]
    started = run(
        [*unshare, HELIX, "worker", "start", "--exit-when-idle"],
        cwd=cli.cwd,
        env={**cli.env, "container": "docker"},
    )
    assert started.returncode == 0, started.stderr
    assert "sandbox: none works here (bwrap failed: bwrap: Can't mount proc" in started.stderr
    assert f"This is a container: start it with {CONTAINER_FLAGS} (or --privileged)" in started.stderr
