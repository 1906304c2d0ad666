"""HelixCode behind a real PgBouncer in transaction mode (Debian's package; CI installs it).

Statements go through the pooler with server-side prepared statements off (PgBouncer before 1.21
cannot follow them in transaction mode); LISTEN goes to PostgreSQL directly (``database.listen_url``),
since a pooler in transaction mode hands the server connection on after each transaction. Two worker
processes drain a job; nothing fails, and the pooler served every client through its own small pool.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.acceptance.test_pg_hygiene import drain, wait_done

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]

REQUIRE = os.environ.get("HELIXTEST_REQUIRE_PGBOUNCER") == "1"
BINARY = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pgbouncer(db_url: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test's database; yields its URL."""
    if BINARY is None:
        if REQUIRE:
            pytest.fail("HELIXTEST_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    direct = psycopg.conninfo.conninfo_to_dict(db_url.replace("postgresql+psycopg://", "postgresql://"))
    port = _free_port()
    # PgBouncer refuses to run as root: as root it is started with -u (a user that can read this folder).
    folder = Path(tempfile.mkdtemp(prefix="helix-pgbouncer-"))
    folder.chmod(0o755)
    user = direct.get("user", "postgres")
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={direct.get('host', '127.0.0.1')} port={direct.get('port', '5432')}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
        "ignore_startup_parameters = extra_float_digits,application_name\n"
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    as_root = ["-u", "postgres"] if os.geteuid() == 0 else []
    log = (folder / "pgbouncer.log").open("w")
    proc = subprocess.Popen(
        [BINARY, *as_root, str(folder / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"postgresql+psycopg://{user}@127.0.0.1:{port}/{direct['dbname']}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=1, prepare_threshold=None):
                    break
            except psycopg.OperationalError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (folder / "pgbouncer.log").read_text()
                    raise AssertionError(f"pgbouncer did not start: {log_text}") from exc
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_fleet_behind_pgbouncer_in_transaction_mode_drains_a_job(
    cli: Cli, db_url: str, pgbouncer: str, tmp_path: Path
) -> None:
    cli.env.update(
        {
            "HELIX_DATABASE_URL": pgbouncer,
            "HELIX_DATABASE_PREPARED_STATEMENTS": "false",
            "HELIX_DATABASE_LISTEN_URL": db_url,  # LISTEN needs a session of its own: straight to PostgreSQL
        }
    )
    workers = [cli.popen("worker", "--concurrency", "8") for _ in range(2)]
    try:
        job = drain(cli, tmp_path, "behind-pgbouncer", 600)
        wait_done(cli, job)
        later = drain(cli, tmp_path, "woken", 20)  # idle workers are woken through the direct LISTEN
        wait_done(cli, later)
        assert all(w.poll() is None for w in workers), "a worker died"
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    logs = "".join(path.read_text() for path in cli.cwd.parent.glob("helix-*.log"))
    assert "prepared statement" not in logs
    assert "database error" not in logs
    assert cli.json("status", job)["counts"]["succeeded"] == 600
