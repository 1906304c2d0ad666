"""PostgreSQL stays healthy under a fleet: no HelixCode connection sits in a transaction, the fleet keeps
working with ``idle_in_transaction_session_timeout`` set on the database, VACUUM can remove the dead
rows of finished work while workers run, and a worker process holds at most two connections (one
pooled for statements, one for LISTEN) whatever its ``--concurrency``.

Two real ``helix worker`` processes drain a graph of no-op tasks and then stay idle; a sampler reads
``pg_stat_activity`` for the test's database every 50 ms the whole time.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.conftest import PG_ADMIN_DSN

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


class Sampler(threading.Thread):
    """The longest any connection to ``dbname`` was seen in a transaction, and the states seen."""

    def __init__(self, dbname: str) -> None:
        super().__init__(daemon=True)
        self.dbname = dbname
        self.longest = 0.0
        self.samples = 0
        self.connections: dict[str, int] = {}  # the most seen at once, by application_name
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT extract(epoch from now() - xact_start) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                    "AND state <> 'active'",
                    (self.dbname,),
                ).fetchall()
                self.longest = max([self.longest, *(float(r[0]) for r in rows)])
                counts = conn.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity "
                    "WHERE datname = %s GROUP BY application_name",
                    (self.dbname,),
                ).fetchall()
                for name, count in counts:
                    self.connections[name] = max(self.connections.get(name, 0), int(count))
                self.samples += 1
                time.sleep(0.05)


def drain(cli: Cli, tmp_path: Path, name: str, tasks: int) -> str:
    plan = {
        "name": name,
        "tasks": [
            {"id": f"t{i}", "type": "building", "title": "noop", "run": {"builtin": "noop"}}
            for i in range(tasks)
        ],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(plan))
    return str(cli.json("submit", str(path))["id"])


def wait_done(cli: Cli, job: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cli.json("status", job)["status"] == "succeeded":
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not finish: {cli.json('status', job)}")


def test_no_connection_stays_in_a_transaction_and_vacuum_keeps_up(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    dbname = database_of(db_url)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {dbname} SET idle_in_transaction_session_timeout = '5s'")
    sampler = Sampler(dbname)
    sampler.start()
    workers = [cli.popen("worker", "--concurrency", "8") for _ in range(2)]
    try:
        first = drain(cli, tmp_path, "first", 400)
        wait_done(cli, first)
        time.sleep(8)  # idle, longer than the idle-in-transaction timeout: nobody may be killed by it
        second = drain(cli, tmp_path, "second", 200)
        wait_done(cli, second)  # the fleet still works after idling past the timeout
        with psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute("VACUUM tasks")
            dead = conn.execute(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'"
            ).fetchone()
        assert all(w.poll() is None for w in workers), "a worker died"
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        sampler.stop.set()
        sampler.join()
    assert sampler.samples > 100
    # The connection budget: one pooled connection for statements plus LISTEN, during the drains
    # and while idle, with eight tasks at a time in each process.
    held = {pid: sampler.connections.get(f"helixcode:{pid}", 0) for pid in (w.pid for w in workers)}
    assert all(count >= 1 for count in held.values()), (held, sampler.connections)
    assert max(held.values()) <= 2, f"connections per worker process: {held}"
    assert sampler.longest < 3.0, f"a connection sat in a transaction for {sampler.longest:.1f}s"
    assert dead is not None
    assert dead[0] == 0
    log = "".join((cli.cwd.parent / f"helix-{i}.log").read_text() for i in (1, 2))
    assert "idle-in-transaction" not in log
    assert "terminating connection" not in log
