"""The PostgreSQL failover drill (#16): a primary with a synchronous streaming standby (built with
``pg_basebackup``, on a second port), workers on a multi-host URL
(``host=primary,standby target_session_attrs=read-write``). Mid-drain the primary is killed
(``pg_ctl stop -m immediate``) and the standby promoted: the workers carry on against it, the job
finishes, and no task that had succeeded before the kill is lost (synchronous replication).

The drill runs its own two throw-away clusters (``initdb`` as the ``postgres`` user), never the
machine's server. Needs root (to run PostgreSQL's tools as ``postgres``); CI runs as root and sets
``HELIXTEST_REQUIRE_FAILOVER=1``, elsewhere the test skips with a message.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helixcode.worker.wakeup import libpq_dsn
from tests.acceptance.conftest import Cli
from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.disruptive, pytest.mark.timeout(420)]

REQUIRE = os.environ.get("HELIXTEST_REQUIRE_FAILOVER") == "1"
TASKS = 600


def _bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "pg_basebackup").exists():
            return Path(out)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return candidates[-1] if candidates else None


class Clusters:
    """Two throw-away PostgreSQL clusters run as the ``postgres`` user."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir, self.base = bindir, base
        self.primary, self.standby = base / "primary", base / "standby"
        self.ports = {"primary": free_port(), "standby": free_port()}

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            cwd=self.base,
        )

    def conninfo(self, which: str, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.ports[which]} user=postgres dbname={dbname}"

    def start(self, which: str) -> None:
        data = self.primary if which == "primary" else self.standby
        self.run("pg_ctl", "-D", str(data), "-l", str(self.base / f"{which}.log"), "-w", "start")

    def set_up(self) -> None:
        self.run("initdb", "-D", str(self.primary), "-A", "trust", "-U", "postgres", "--no-sync")
        with (self.primary / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.ports['primary']}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\nwal_level = replica\nmax_wal_senders = 5\n"
                "synchronous_standby_names = '*'\nsynchronous_commit = on\n"
            )
        self.start("primary")
        self.run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.ports["primary"]), "-U", "postgres",
            "-D", str(self.standby), "-R", "--wal-method=stream",
        )  # fmt: skip
        with (self.standby / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.ports['standby']}\n")
        self.start("standby")
        with psycopg.connect(self.conninfo("primary"), autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone() != ("sync",):
                if time.monotonic() > deadline:
                    raise AssertionError("the standby did not become synchronous")
                time.sleep(0.1)
            conn.execute("CREATE DATABASE helix")

    def tear_down(self) -> None:
        for data in (self.primary, self.standby):
            if (data / "postmaster.pid").exists():
                self.run("pg_ctl", "-D", str(data), "-m", "immediate", "stop", check=False)


@pytest.fixture
def clusters() -> Iterator[Clusters]:
    bindir = _bindir()
    why = None
    if os.geteuid() != 0:
        why = "needs root to run PostgreSQL's tools as the postgres user: CI runs it as root"
    elif bindir is None or shutil.which("runuser") is None:
        why = "PostgreSQL's server tools (initdb, pg_basebackup) or runuser are missing"
    if why:
        if REQUIRE:
            pytest.fail(f"HELIXTEST_REQUIRE_FAILOVER=1 but the drill cannot run: {why}")
        pytest.skip(why)
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="helix-failover-"))
    pg = pwd.getpwnam("postgres")
    os.chown(base, pg.pw_uid, pg.pw_gid)
    found = Clusters(bindir, base)
    try:
        found.set_up()
        yield found
    finally:
        found.tear_down()
        shutil.rmtree(base, ignore_errors=True)


def succeeded(conninfo: str) -> set[int]:
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        rows = conn.execute("SELECT id FROM tasks WHERE status = 'succeeded'").fetchall()
    return {int(r[0]) for r in rows}


def wait(predicate: Any, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_the_fleet_fails_over_to_a_promoted_synchronous_standby_and_loses_no_success(
    clusters: Clusters, tmp_path: Path
) -> None:
    p, s = clusters.ports["primary"], clusters.ports["standby"]
    url = (
        "postgresql+psycopg://postgres@/helix"
        f"?host=127.0.0.1:{p}&host=127.0.0.1:{s}&target_session_attrs=read-write"
    )
    assert libpq_dsn(url).endswith(f"host=127.0.0.1,127.0.0.1 port={p},{s} target_session_attrs=read-write")
    work = tmp_path / "work"
    work.mkdir()
    cli = Cli(work, url)
    cli("db", "upgrade")
    plan = {
        "name": "failover",
        "tasks": [
            {"id": f"t{i}", "type": "building", "title": "t", "run": {"builtin": "sleep", "seconds": 0.05}}
            for i in range(TASKS)
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    job = cli.json("submit", str(tmp_path / "plan.json"))["id"]
    workers = [cli.popen("worker", "start", "--concurrency", "4") for _ in range(2)]
    try:
        primary = clusters.conninfo("primary", "helix")
        wait(lambda: len(succeeded(primary)) >= TASKS // 5, 120, "a fifth of the tasks to succeed")
        clusters.run("pg_ctl", "-D", str(clusters.primary), "-m", "immediate", "stop")
        # Read after the kill: whatever the primary had committed, it committed on the standby first.
        before = succeeded(clusters.conninfo("standby", "helix"))
        clusters.run("pg_ctl", "-D", str(clusters.standby), "-w", "promote")
        # The new primary has no standby of its own: it must stop waiting for one, or every commit
        # hangs (the step an operator takes after failing over with synchronous replication).
        with psycopg.connect(clusters.conninfo("standby"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            conn.execute("SELECT pg_reload_conf()")
        wait(
            lambda: cli.json("status", job)["status"] == "succeeded", 180, "the job to finish on the standby"
        )
        assert all(w.poll() is None for w in workers), "a worker died at the failover"
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    after = succeeded(clusters.conninfo("standby", "helix"))
    assert len(after) == TASKS
    assert len(before) >= TASKS // 5
    assert before <= after, "a success committed before the failover was lost"
    with psycopg.connect(clusters.conninfo("standby", "helix")) as conn:
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT task_id FROM results WHERE outcome = 'succeeded' "
            "GROUP BY task_id HAVING count(*) > 1) s"
        ).fetchone()
    assert twice == (0,), "a success recorded twice"
    logs = "".join(path.read_text() for path in work.parent.glob("helix-*.log"))
    assert "Traceback" not in logs, logs[-3000:]
