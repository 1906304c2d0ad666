"""``python -m bench [--quick] [--only NAME[,NAME]]``: run the measures, print one table, save it as JSON.

Measures: throughput, handoff, makespan, recovery, scale, llm, sandbox, tracing, fleet, startup,
dashboard (and ``profile``, run only when named: a pyinstrument profile of HelixCode's claim+complete
loop; and ``soak``, a million tasks).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rich.console import Console

from bench import (
    dashboard,
    fleet,
    handoff,
    llm,
    makespan,
    recovery,
    sandbox,
    scale,
    startup,
    throughput,
    tracing,
)
from bench.common import ROOT, Mode, pg_durability
from bench.report import Report

MEASURES: dict[str, Callable[..., None]] = {
    "throughput": throughput.run,
    "handoff": handoff.run,
    "makespan": makespan.run,
    "recovery": recovery.run,
    "scale": scale.run,
    "llm": llm.run,
    "sandbox": sandbox.run,
    "tracing": tracing.run,
    "fleet": fleet.run,
    "startup": startup.run,
    "dashboard": dashboard.run,
}


def durability(report: Report) -> None:
    pg = pg_durability()
    report.settings["PostgreSQL (every PostgreSQL figure, ours and the peers')"] = pg
    report.settings["SQLite (HelixCode)"] = "journal_mode=WAL, synchronous=NORMAL, BEGIN IMMEDIATE writes"
    report.settings["pgqueuer"] = "durability=durable (all its tables logged), psycopg driver"
    report.settings["procrastinate"] = "psycopg pool connector, LISTEN/NOTIFY on"
    report.settings["Celery"] = "Redis broker without persistence (appendonly no), acks_late, --pool solo"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repetition (under 2 min)")
    parser.add_argument("--only", default="", help="comma-separated measures: " + ", ".join(MEASURES))
    args = parser.parse_args()
    mode = Mode.for_run(args.quick)
    console = Console(width=max(170, Console().width))  # the table is wide; piped output too
    wanted = [m.strip() for m in args.only.split(",") if m.strip()] or list(MEASURES)
    if "profile" in wanted:
        from bench import profile

        for batch in (1, 10):
            console.print(
                f"[bold]profile, claim limit {batch}[/]: {profile.main('pg', 300, batch):.0f} tasks/s"
            )
        wanted.remove("profile")
        if not wanted:
            return
    if "soak" in wanted:  # long: run only when named
        from bench import soak

        MEASURES["soak"] = soak.run
    unknown = set(wanted) - set(MEASURES)
    if unknown:
        parser.error(f"unknown measure(s): {', '.join(sorted(unknown))}")
    report = Report("quick" if args.quick else "default")
    durability(report)
    report.settings["sizes"] = (
        f"{mode.reps} repetition(s); {mode.drain_tasks} no-op tasks per drain; {mode.handoffs} hand-offs; "
        f"{mode.dag_tasks}-task DAG; {mode.scale_tasks:,}-task scale DAG; {mode.llm_reps} LLM runs"
    )
    for name in wanted:
        started = time.monotonic()
        console.rule(f"[bold]{name}")
        try:
            MEASURES[name](mode, report, lambda msg: console.print(f"  {msg}", highlight=False))
        except Exception as exc:
            report.notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
            console.print_exception(max_frames=5)
        console.print(f"  [dim]{name} took {time.monotonic() - started:.0f}s[/]")
    report.notes.append(
        "numbers taken on a shared 2-core machine; compare ratios within this run, not across runs"
    )
    report.print(console)
    path = report.write(ROOT / "bench" / "results")
    console.print(f"[dim]saved {path.relative_to(ROOT)}[/]")


if __name__ == "__main__":
    main()
