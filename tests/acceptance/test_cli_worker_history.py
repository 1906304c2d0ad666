"""`helix workers --history WORKER` against a real worker process and its heartbeats."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from helixcode.cli.history import series, sparkline
from tests.acceptance.conftest import Cli

BLOCKS = set("▁▂▃▄▅▆▇█")


def history(cli: Cli, ref: str) -> dict[str, Any]:
    data: dict[str, Any] = cli.json("workers", "--history", ref)
    return data


@pytest.mark.slow
def test_worker_history_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    # A busy worker beats every heartbeat_interval (an idle one only four times per lost_after): it
    # runs a long task while the test reads its history, and hands it back when stopped.
    cli.env.update({"HELIX_TASKS_HEARTBEAT_INTERVAL": "0.3", "HELIX_WORKERS_DRAIN_TIMEOUT": "0"})
    plan = {
        "tasks": [
            {"id": "busy", "type": "building", "title": "busy", "run": {"builtin": "sleep", "seconds": 60}}
        ]
    }
    (tmp_path / "busy.json").write_text(json.dumps(plan))
    cli("submit", str(tmp_path / "busy.json"))
    proc = cli.popen("worker", "--name", "sampled")
    try:
        deadline = time.monotonic() + 60
        while True:  # until the worker has registered and sent a few heartbeats
            assert proc.poll() is None, "the worker exited"
            asked = cli("workers", "--history", "sampled", "--json", check=False)
            if asked.returncode == 0 and len(json.loads(asked.stdout)["samples"]) >= 6:
                break
            assert time.monotonic() < deadline, asked.stderr
            time.sleep(0.3)
        live = json.loads(asked.stdout)
        assert live["worker"]["status"] == "active"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    data = history(cli, "sampled")
    worker_id = data["worker"]["id"]
    assert data["worker"]["status"] == "stopped"
    samples = data["samples"]
    assert len(samples) >= len(live["samples"])
    times = [s["at"] for s in samples]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    for s in samples:
        assert 0 <= s["resources"]["cpu_percent"] <= 100
        assert 0 < s["resources"]["memory_percent"] <= 100
        assert s["resources"]["process_rss_mb"] > 0
    assert history(cli, worker_id[:-2])["worker"]["id"] == worker_id  # a unique prefix

    table = cli("workers", "--history", "sampled").stdout
    assert f"Worker {worker_id} (sampled, stopped)" in table
    assert f"{len(samples)} samples over" in table
    lines = {line.split()[0]: line.rstrip() for line in table.splitlines() if line.strip()}
    pairs = [(s["at"], s["resources"]) for s in samples]
    for label, key in (("cpu", "cpu_percent"), ("memory", "memory_percent")):
        values = [s["resources"][key] for s in samples]
        last, low, _mean, high = lines[label].split()[1:5]
        assert (last, low, high) == (f"{values[-1]:.0f}%", f"{min(values):.0f}%", f"{max(values):.0f}%")
        points = series(pairs, lambda r, k=key: r.get(k))
        drawn = sparkline(points, min(40, len(samples)), lo=0, hi=100, span=(times[0], times[-1]))
        assert set(drawn) <= BLOCKS | {" "}
        assert set(drawn) & BLOCKS
        assert lines[label].endswith(drawn.rstrip())

    unknown = cli("workers", "--history", "nobody", check=False)
    assert unknown.returncode == 2
    assert "no worker 'nobody'" in unknown.stderr
