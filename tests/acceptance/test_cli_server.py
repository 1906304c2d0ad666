"""The CLI through the REST API: `helix serve` in a subprocess, `helix token create`, and the read and
control commands with HELIX_SERVER/HELIX_TOKEN instead of a database."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.acceptance.conftest import Cli
from tests.helpers import free_port

PLAN = """\
name: remote
tasks:
  - {id: a, type: building, title: A, run: {builtin: noop}}
  - {id: b, type: testing, title: B, depends_on: [a], run: {builtin: noop}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the server's database is tested elsewhere
def test_cli_commands_go_through_the_server(cli: Cli, write_plan) -> None:  # type: ignore[no-untyped-def]
    operator = cli("token", "create", "--role", "operator", "--name", "ops").stdout.strip()
    viewer = json.loads(cli("token", "create", "--role", "viewer", "--json").stdout)
    assert viewer["token"].startswith("hx_")
    assert [t["role"] for t in cli.json("token", "list")] == ["operator", "viewer"]
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
        # From here on the CLI has no database: every command below must use the API.
        db = cli.env.pop("HELIX_DATABASE_URL")
        cli.env.update({"HELIX_SERVER": f"http://127.0.0.1:{port}", "HELIX_TOKEN": operator})

        job = json.loads(cli("submit", str(write_plan("plan.yaml", PLAN)), "--json").stdout)
        assert job["name"] == "remote"
        [listed] = cli.json("status")
        assert listed["id"] == job["id"]
        assert cli.json("status", job["id"][:6])["counts"] == {"ready": 1, "blocked": 1}
        assert [t["key"] for t in cli.json("tasks", job["id"], "--status", "ready")] == ["a"]
        assert [e["kind"] for e in cli.json("events", job["id"])] == ["created", "ready"]
        assert cli.json("workers", "--all") == []  # no worker has registered with this database
        assert "paused" in cli("pause", job["id"]).stdout
        assert cli.json("status", job["id"])["status"] == "paused"
        assert "resumed" in cli("resume", job["id"]).stdout
        assert "Cancelled 2 tasks" in cli("cancel", job["id"]).stdout

        missing = cli("status", "nope", check=False)
        assert missing.returncode == 2
        assert "no job 'nope'" in missing.stderr
        cli.env["HELIX_TOKEN"] = viewer["token"]
        assert cli.json("status", job["id"])["status"] == "cancelled"
        refused = cli("pause", job["id"], check=False)
        assert refused.returncode == 1
        assert "operator role" in refused.stderr
        cli.env.pop("HELIX_TOKEN")
        anonymous = cli("status", check=False)
        assert anonymous.returncode == 1
        assert "HELIX_TOKEN" in anonymous.stderr

        cli.env["HELIX_DATABASE_URL"] = db
        cli.env.pop("HELIX_SERVER")
        cli("token", "revoke", viewer["id"])
        assert [t["role"] for t in cli.json("token", "list")] == ["operator"]
    finally:
        server.terminate()
        server.wait(15)
