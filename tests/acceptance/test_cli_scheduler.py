"""The scheduler end to end: `helix submit`, real `helix worker` processes, `resume`, `split`, `events -f`.

Outcomes are read back from the database (tasks, results, events), and claim order is checked against
what was ready at each claim, replayed from the event log.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from helixcode.config import DatabaseSettings, Settings
from helixcode.domain.models import Event, Task
from helixcode.store.store import Store
from helixcode.store.tables import results
from helixcode.store.tables import tasks as tasks_table
from tests.acceptance.conftest import HELIX, Cli

PRIORITIES = ("low", "normal", "high")
CRITICALITIES = ("low", "normal", "high", "critical")
FAST = {
    "HELIX_WORKERS_POLL_INTERVAL": "0.2",
    "HELIX_TASKS_HEARTBEAT_INTERVAL": "1",
    "HELIX_TASKS_LEASE_TTL": "10",
    "HELIX_TASKS_BACKOFF_BASE": "0.05",
    "HELIX_TASKS_BACKOFF_CAP": "0.2",
}


# -- reading the outcome back -------------------------------------------------------------------


@dataclass
class Outcome:
    job: dict[str, Any]
    tasks: dict[str, Task]
    events: list[Event]
    results: list[dict[str, Any]]


def read_outcome(db_url: str, job_id: str) -> Outcome:
    async def go() -> Outcome:
        store = await Store.open(Settings(database=DatabaseSettings(url=db_url)))
        try:
            found = {t.key: t for t in await store.list_tasks(job_id)}
            events: list[Event] = []
            while batch := await store.list_events(job_id, events[-1].id if events else 0, 5000):
                events += batch
            stmt = (
                sa.select(results, tasks_table.c.key)
                .join(tasks_table, tasks_table.c.id == results.c.task_id)
                .where(tasks_table.c.job_id == job_id)
                .order_by(results.c.finished_at)
            )
            async with store._read() as conn:
                rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
            summary = (await store.job_summary(job_id)).to_dict()
            return Outcome(summary, found, events, rows)
        finally:
            await store.aclose()

    return asyncio.run(go())


def run_workers(cli: Cli, *argvs: Sequence[str], timeout: float = 100) -> None:
    """Start `helix worker --exit-when-idle ARGS` once per ``argvs`` item, all at once; wait for all."""
    procs = [cli.popen("worker", "--exit-when-idle", *argv) for argv in argvs]
    try:
        codes = [proc.wait(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(codes):
        logs = "\n".join(p.read_text()[-2000:] for p in sorted(cli.cwd.parent.glob("helix-*.log")))
        raise AssertionError(f"workers exited {codes}:\n{logs}")


def claim_rank(task: Task) -> tuple[int, int]:
    """Lower is claimed first: priority, then criticality."""
    return (-task.priority.rank, -task.criticality.rank)


def late_claims(
    events: Iterable[Event],
    tasks_by_key: dict[str, Task],
    caps_of: Callable[[str], set[str]],
    slack: int,
    grace: float = 1.0,
) -> list[str]:
    """Replay the log; at each claim, every task the claimer could run that ranks better and had been
    ready for ``grace`` seconds must itself be claimed within the next ``slack`` claims.

    The allowances are for transactions in flight: on PostgreSQL a claim may pass over rows another
    claim holds (SKIP LOCKED), and an event's id or time is taken before its transaction commits, so a
    task may look ready a moment before a claimer could see it. Returns a line per violation."""
    log = list(events)
    claim_order = [e.task_key for e in log if e.kind == "claimed"]
    claimed_at: dict[str | None, list[int]] = {}
    for i, key in enumerate(claim_order):
        claimed_at.setdefault(key, []).append(i)
    ready: dict[str, float] = {}
    violations: list[str] = []
    n = 0
    for e in log:
        if e.task_key is None:
            continue
        if e.kind in ("ready", "requeued"):
            ready[e.task_key] = e.created_at
        elif e.kind in ("cancelled", "skipped", "split", "paused"):
            ready.pop(e.task_key, None)
        elif e.kind == "claimed":
            ready.pop(e.task_key, None)
            me = tasks_by_key[e.task_key]
            caps = caps_of(e.worker_id or "")
            for other in sorted(ready):
                task = tasks_by_key[other]
                if claim_rank(task) >= claim_rank(me) or not set(task.requires) <= caps:
                    continue
                if ready[other] > e.created_at - grace:
                    continue
                later = [p for p in claimed_at.get(other, []) if p > n]
                if not later or later[0] > n + slack:
                    violations.append(f"claim #{n} ({e.task_key}) passed over {other}")
            n += 1
    return violations


# -- 2,000 tasks, several processes -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_worker_processes_run_2000_tasks_exactly_once_in_priority_order(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    rng = random.Random(2000)
    plan = {
        "name": "many",
        "tasks": [
            {
                "id": f"t{i:04}",
                "type": "building",
                "title": f"task {i}",
                "priority": rng.choice(PRIORITIES),
                "criticality": rng.choice(CRITICALITIES),
                "run": {"builtin": "noop"},
            }
            for i in range(2000)
        ],
    }
    path = tmp_path / "many.json"
    path.write_text(json.dumps(plan))
    # No retries or expiries to maintain here: a slow reaper leaves the database to the claims.
    cli.env.update({**FAST, "HELIX_WORKERS_POLL_INTERVAL": "1"})
    job = cli.json("submit", str(path))
    # SQLite has one writer at a time: more slots per process only queue on its lock.
    processes, concurrency = 3, (1 if db_url.startswith("sqlite") else 4)
    run_workers(cli, *[("--concurrency", str(concurrency))] * processes)

    outcome = read_outcome(db_url, job["id"])
    assert outcome.job["status"] == "succeeded"
    assert outcome.job["counts"] == {"succeeded": 2000}
    assert all(t.attempts == 1 for t in outcome.tasks.values())
    assert Counter((r["key"], r["attempt"], r["outcome"]) for r in outcome.results) == {
        (key, 1, "succeeded"): 1 for key in outcome.tasks
    }
    for kind in ("claimed", "succeeded"):
        per_task = Counter(e.task_key for e in outcome.events if e.kind == kind and e.task_key)
        assert per_task == dict.fromkeys(outcome.tasks, 1), f"one '{kind}' event per task"
    claims = [e for e in outcome.events if e.kind == "claimed"]
    assert len({e.worker_id for e in claims}) == processes, "every process took a share"

    slack = processes * concurrency
    assert late_claims(outcome.events, outcome.tasks, lambda _w: set(), slack) == []
    # The check has teeth: the same claims in a random order break it many times over.
    shuffled_keys = [e.task_key for e in claims]
    random.Random(1).shuffle(shuffled_keys)
    shuffled = [
        e
        if e.kind != "claimed"
        else Event(e.id, e.job_id, shuffled_keys.pop(), e.kind, e.created_at, 1, e.worker_id)
        for e in outcome.events
    ]
    assert len(late_claims(shuffled, outcome.tasks, lambda _w: set(), slack)) > 100


# -- the 200-task graph -------------------------------------------------------------------------


def graph_200() -> dict[str, Any]:
    """Mixed priorities and criticalities, GPU-only tasks, dependencies, a flaky task, a checkpointed
    task that times out and resumes, and a critical task that fails its first attempt."""
    rng = random.Random(200)
    tasks: list[dict[str, Any]] = [
        {
            "id": "flaky",
            "type": "testing",
            "title": "fails twice",
            "run": {"builtin": "fail", "fail_attempts": 2},
            "max_attempts": 3,
            "priority": "high",
        },
        {
            "id": "nap",
            "type": "building",
            "title": "checkpointed sleep",
            "run": {"builtin": "sleep", "seconds": 1.0},
            "timeout": 0.6,
            "max_attempts": 5,
            "priority": "high",
        },
        {
            "id": "crit",
            "type": "deployment",
            "title": "critical, fails once",
            "run": {"builtin": "fail", "fail_attempts": 1},
            "max_attempts": 1,
            "criticality": "critical",
            "priority": "low",
        },
    ]
    for i in range(5):
        tasks.append({"id": f"after-crit-{i}", "type": "testing", "title": "after", "depends_on": ["crit"]})
    keys = ["flaky", "nap"]
    while len(tasks) < 200:
        i = len(tasks)
        deps = rng.sample(keys, k=min(len(keys), rng.choice([0, 0, 0, 1, 2])))
        task: dict[str, Any] = {
            "id": f"t{i:03}",
            "type": rng.choice(["building", "testing", "design"]),
            "title": f"task {i}",
            "priority": rng.choice(PRIORITIES),
            "criticality": rng.choice(["low", "normal", "high"]),
            "depends_on": deps,
        }
        if i % 6 == 0:
            task["requires"] = ["tpu-x"]
        tasks.append(task)
        keys.append(task["id"])
    for task in tasks:
        task.setdefault("run", {"builtin": "noop"})
    return {"name": "graph-200", "tasks": tasks}


@pytest.mark.slow
def test_a_200_task_graph_runs_as_specified_from_the_cli(cli: Cli, db_url: str, tmp_path: Path) -> None:
    plan = graph_200()
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(plan))
    cli.env.update(FAST)
    job_id = cli.json("submit", str(path))["id"]
    plain = ("--concurrency", "2", "--name", "plain")
    tpu = ("--concurrency", "2", "--name", "tpu", "--capability", "tpu-x")

    # Phase 1: the critical task fails for good; the job pauses and the workers run dry and exit.
    run_workers(cli, plain, tpu)
    paused = cli.json("status", job_id)
    assert paused["status"] == "paused"
    assert "crit" in paused["pause_reason"]
    assert "failing on purpose" in paused["pause_reason"]

    # Phase 2: resume retrying it; the job finishes.
    cli("resume", job_id, "--retry", "crit")
    run_workers(cli, plain, tpu)
    outcome = read_outcome(db_url, job_id)
    assert outcome.job["status"] == "succeeded", outcome.job
    assert outcome.job["counts"] == {"succeeded": 200}

    # Exactly one successful run per task, and failures only where the plan asked for them.
    succeeded = Counter(r["key"] for r in outcome.results if r["outcome"] == "succeeded")
    assert succeeded == dict.fromkeys(outcome.tasks, 1)
    failed = Counter(r["key"] for r in outcome.results if r["outcome"] == "failed")
    assert set(failed) <= {"flaky", "nap", "crit"}
    assert (failed["flaky"], failed["crit"]) == (2, 1)
    assert outcome.tasks["flaky"].attempts == 3
    assert outcome.tasks["crit"].attempts == 2

    # Retries waited as the formula allows.
    for e in outcome.events:
        if e.kind == "retried" and "delay" in e.details:
            assert 0.0 <= e.details["delay"] <= min(0.2, 0.05 * 2 ** (e.details["failures"] - 1)) + 5e-4

    # The checkpointed task timed out and its next attempt resumed from the checkpoint.
    nap_results = [r for r in outcome.results if r["key"] == "nap"]
    assert nap_results[0]["error"] == "timed out after 0.6s"
    final = nap_results[-1]
    assert final["outcome"] == "succeeded"
    assert final["output"]["slept"] == 1.0
    assert 0.0 < final["output"]["resumed_from"] < 1.0

    # Capabilities: only the worker with the label ran tasks that require it.
    workers = {w["id"]: w for w in cli.json("workers", "--all")}
    names = {w["name"] for w in workers.values()}
    assert names == {"plain", "tpu"}

    def caps_of(worker_id: str) -> set[str]:
        return set(workers[worker_id]["capabilities"])

    claims = [e for e in outcome.events if e.kind == "claimed"]
    for e in claims:
        task = outcome.tasks[e.task_key or ""]
        assert set(task.requires) <= caps_of(e.worker_id or ""), f"{task.key} ran on {e.worker_id}"
    assert {workers[e.worker_id or ""]["name"] for e in claims} == {"plain", "tpu"}

    # Nothing of the job was claimed while it was paused, and the paused job resumed once.
    job_events = [(e.id, e.kind) for e in outcome.events if e.task_key is None]
    kinds = [k for _, k in job_events]
    assert kinds == ["created", "paused", "resumed", "succeeded"]
    # A claim already in flight when the pause commits may still land (PostgreSQL assigns event ids at
    # insert, not at commit), but none may start once the pause has taken effect.
    paused_event = next(e for e in outcome.events if e.task_key is None and e.kind == "paused")
    resumed_at = job_events[2][0]
    late = [e for e in claims if e.id < resumed_at and e.created_at > paused_event.created_at + 1.0]
    assert not late
    after_crit = [e for e in claims if (e.task_key or "").startswith("after-crit")]
    assert len(after_crit) == 5
    assert min(e.id for e in after_crit) > resumed_at

    # Claim order: nothing better that the claimer could run was left waiting (2 workers x 2 slots).
    assert late_claims(outcome.events, outcome.tasks, caps_of, slack=4) == []


# -- splitting and following from the CLI -------------------------------------------------------


SPLIT_PLAN = """
name: split
tasks:
  - {id: gate, type: design, title: Gate, run: {builtin: noop}}
  - id: big
    type: porting
    title: Port files
    depends_on: [gate]
    run: {shell: 'printf "%s\\n" "$HELIX_ITEMS" > "out-$HELIX_TASK_KEY.txt"'}
  - {id: after, type: testing, title: After, depends_on: [big], run: {builtin: noop}}
"""


@pytest.mark.slow
def test_split_and_follow_from_the_cli(
    cli: Cli, write_plan: Callable[[str, str], Path], tmp_path: Path
) -> None:
    cli.env.update(FAST)
    job_id = cli.json("submit", str(write_plan("split.yaml", SPLIT_PLAN)), "--workdir", str(cli.cwd))["id"]
    items = tmp_path / "items.json"
    weights = {"a.py": 5, "b.py": 3, "c.py": 2, "d.py": 2, "e.py": 1}
    items.write_text(json.dumps(weights))
    out = cli("split", job_id, "big", "--items", str(items), "--parts", "2").stdout
    assert "Split 'big' into 2 parts: big.1, big.2" in out
    listed = {t["key"]: t for t in cli.json("tasks", job_id)}
    assert listed["big"]["status"] == "waiting"
    parts = [listed["big.1"]["run"]["items"], listed["big.2"]["run"]["items"]]
    assert sorted(i for p in parts for i in p) == sorted(weights)
    loads = sorted(sum(weights[i] for i in p) for p in parts)
    assert loads == [6, 7], "balanced: 13 split as evenly as whole items allow"

    bad = tmp_path / "bad.json"
    bad.write_text('{"a": "heavy"}')
    refused = cli("split", job_id, "after", "--items", str(bad), check=False)
    assert refused.returncode == 2

    # Read by us once it ends (a small job's events fit in the pipe's buffer meanwhile).
    follow = subprocess.Popen(
        [HELIX, "events", job_id, "--follow", "--json"],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_workers(cli, ("--concurrency", "2"))
        out, err = follow.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        follow.kill()
        follow.communicate()
        raise AssertionError("`helix events --follow` did not end when the job ended") from None
    assert follow.returncode == 0, err
    followed = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert followed[-1]["kind"] == "succeeded"
    assert followed[-1]["task_key"] is None
    ids = [e["id"] for e in followed]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))

    for key, part in zip(("big.1", "big.2"), parts, strict=True):
        assert (cli.cwd / f"out-{key}.txt").read_text().split() == part
    succeeded = [e["task_key"] for e in followed if e["kind"] == "succeeded" and e["task_key"]]
    assert succeeded.index("after") > max(succeeded.index("big.1"), succeeded.index("big.2"))
    assert succeeded.index("big") < succeeded.index("after")
