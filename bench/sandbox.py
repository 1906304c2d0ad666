"""Measure 7, the agent sandbox's cost: the same command through ``Sandbox.run`` confined (bubblewrap,
the full profile with its limits) and unconfined (``agent.sandbox = "off"``), interleaved so that load
on the machine falls on both alike. The command is ``true``: what is measured is start-up and tear-down,
the latency every ``run_command`` of an agent pays. Added latency is the confined figure minus the
unconfined one at each percentile.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Mode
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "7. Agent sandbox (bubblewrap)"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(runs: int) -> dict[str, list[float]]:
    from helixcode.agent.sandbox import Sandbox

    confined, unconfined = Sandbox(), Sandbox(mode="off")
    out: dict[str, list[float]] = {"confined": [], "unconfined": []}
    with tempfile.TemporaryDirectory(prefix="helix-bench-sandbox-") as tmp:
        root = Path(tmp)
        for sandbox in (confined, unconfined):  # warm up: the probe, the /etc snapshot, the page cache
            await sandbox.run("true", worktree=root, timeout=30)
        for _ in range(runs):
            for name, sandbox in (("confined", confined), ("unconfined", unconfined)):
                started = time.perf_counter()
                result = await sandbox.run("true", worktree=root, timeout=30)
                out[name].append((time.perf_counter() - started) * 1000)
                assert result.ok, result
    return out


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    from helixcode.agent.sandbox import Sandbox

    probe = Sandbox().probe()
    if probe.backend is None:
        report.add(Row(SECTION, "sandboxed command", "ms", None, "unconfined", f"not run: {probe.line()}"))
        return
    out = asyncio.run(_measure(60 if mode.quick else 300))
    for q, label, target in ((0.5, "p50", 15.0), (0.99, "p99", None)):
        ours, theirs = _percentile(out["confined"], q), _percentile(out["unconfined"], q)
        added = ours - theirs
        report.add(
            Row(
                SECTION,
                f"`true` through Sandbox.run, {label}",
                "ms",
                ours,
                "the same, unconfined",
                theirs,
                higher_is_better=False,
                target=f"added <= {target:g} ms" if target else "",
                met=added <= target if target else None,
                note=f"(added: {added:+.1f} ms; {probe.binary})",
            )
        )
    spread = statistics.pstdev(out["confined"])
    mean = statistics.mean(out["confined"])
    log(f"confined: mean {mean:.1f} ms, sd {spread:.1f} ms over {len(out['confined'])} runs")
