"""`helix watch` and `helix graph` as a user runs them: the real console script in subprocesses.

Without a terminal (a pipe, CI), `helix watch JOB` prints a line per task status change and exits
with the job's outcome (``--once``: one look); through `helix serve` the same. In a real terminal
(tmux), it draws the Textual screen on the alternate screen, and `q` gives the shell back with the
terminal as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import HELIX, Cli
from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

PLAN = """\
name: watched
tasks:
  - {id: nap, type: building, title: Nap, run: {builtin: sleep, seconds: 3}}
  - {id: ship, type: deployment, title: Ship, depends_on: [nap], run: {builtin: noop}}
"""
ALTERNATE_SCREEN = "\x1b[?1049h"


def _submit(cli: Cli, write_plan: Callable[[str, str], Path]) -> str:
    return str(json.loads(cli("submit", str(write_plan("plan.yaml", PLAN)), "--json").stdout)["id"])


def test_watch_without_a_terminal_prints_status_lines_until_the_job_ends(
    cli: Cli, write_plan: Callable[[str, str], Path]
) -> None:
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        cli.env.pop(forcing, None)  # what a log gets by default
    job = _submit(cli, write_plan)
    watch = cli.popen("watch", job[:8])  # stdout is a file: no terminal
    log = cli.cwd.parent / "helix-1.log"
    time.sleep(1.0)
    worker = cli.popen("worker", "start", "--exit-when-idle")
    try:
        assert watch.wait(60) == 0
    finally:
        worker.wait(30)
    out = log.read_text()
    assert ALTERNATE_SCREEN not in out
    assert "\x1b[" not in out  # no colours or cursor moves in a log
    lines = [line.split() for line in out.splitlines()]
    assert ["nap", "ready"] in [line[1:3] for line in lines if len(line) > 2]
    assert ["ship", "blocked"] in [line[1:3] for line in lines if len(line) > 2]
    assert any(line[1:3] == ["nap", "running"] for line in lines if len(line) > 2)  # followed live
    assert any(line[1:4] == ["ship", "succeeded", "after"] for line in lines if len(line) > 3)
    assert out.rstrip().endswith(f"Job {job} succeeded: 2 succeeded")


def test_watch_once_and_graph_through_the_server(cli: Cli, write_plan: Callable[[str, str], Path]) -> None:
    token = cli("token", "create", "--role", "viewer", "--name", "watcher").stdout.strip()
    job = _submit(cli, write_plan)
    missing = cli("watch", check=False)
    assert missing.returncode == 2
    assert "give JOB" in missing.stderr
    port = free_port()
    server = cli.popen("serve", "--port", str(port))
    try:
        _wait_for_port(port, server)
        cli.env.pop("HELIX_DATABASE_URL")
        cli.env.update({"HELIX_SERVER": f"http://127.0.0.1:{port}", "HELIX_TOKEN": token})

        once = cli("watch", job, "--once")
        rows = [line.split()[1:3] for line in once.stdout.splitlines()[:2]]
        assert rows == [["nap", "ready"], ["ship", "blocked"]]
        assert once.stdout.rstrip().endswith(f"Job {job} running: 1 blocked, 1 ready")

        graph = json.loads(cli("graph", job, "--format", "json").stdout)
        assert graph["job"] == {"id": job, "name": "watched", "status": "running"}
        assert [(n["key"], n["status"]) for n in graph["nodes"]] == [("nap", "ready"), ("ship", "blocked")]
        assert graph["edges"] == [{"dependency": "nap", "dependent": "ship"}]
        mermaid = cli("graph", job[:6]).stdout
        assert mermaid.startswith("flowchart LR\n")
        assert "  t_nap --> t_ship\n" in mermaid
        dot = cli("graph", job, "-f", "dot", "--direction", "TB").stdout
        assert "rankdir=TB" in dot
        if shutil.which("dot"):
            subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True)
    finally:
        server.terminate()
        server.wait(15)


def _wait_for_port(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert server.poll() is None, "helix serve exited"
            assert time.monotonic() < deadline, "helix serve did not start"
            time.sleep(0.1)


# -- a real terminal ------------------------------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket) with one window running bash."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"helix-test-{uuid.uuid4().hex[:8]}"
        self.run(
            "new-session", "-d", "-s", "t", "-x", "150", "-y", "45", "-c", str(cwd), "bash --norc --noprofile"
        )

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def type(self, line: str) -> None:
        self.run("send-keys", "-t", "t", "-l", line)
        self.run("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def alternate(self) -> bool:
        return self.run("display-message", "-p", "-t", "t", "#{alternate_on}").strip() == "1"

    def wait_for(self, check: Callable[[], bool], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, f"the terminal never got there:\n{self.screen()}"
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux(cli: Cli) -> Iterator[Tmux]:
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed: the real-terminal test needs it")
    session = Tmux(cli.cwd)
    yield session
    session.close()


def test_watch_in_a_real_terminal_quits_on_q_and_restores_it(
    cli: Cli, write_plan: Callable[[str, str], Path], tmux: Tmux
) -> None:
    job = _submit(cli, write_plan)
    env = " ".join(f"{k}={v}" for k, v in cli.env.items() if k.startswith(("HELIX_", "XDG_")))
    tmux.type("stty -g > before.stty")
    tmux.type(f"env {env} TERM=xterm-256color {HELIX} watch; echo watch-exited-$?")
    tmux.wait_for(lambda: re.search(r"nap\s+building\s+ready", tmux.screen()) is not None)
    assert tmux.alternate()
    screen = tmux.screen()
    assert job in screen
    assert "q Quit" in screen

    tmux.run("send-keys", "-t", "t", "q")
    tmux.wait_for(lambda: "watch-exited-0" in tmux.screen())
    assert not tmux.alternate()
    tmux.type("stty -g > after.stty")
    tmux.wait_for(lambda: (cli.cwd / "after.stty").exists() and (cli.cwd / "after.stty").read_text() != "")
    assert (cli.cwd / "after.stty").read_text() == (cli.cwd / "before.stty").read_text()
