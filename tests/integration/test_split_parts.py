"""`helix split` through the engine and the store, on both databases: each part gets only its items, where
its run kind's executor reads them, and a description that lists them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from helixcode.domain.kinds import load_run
from helixcode.domain.plan import parse_plan
from helixcode.domain.runs import AgentRun, PythonRun, ShellRun, TestCycleRun
from helixcode.domain.splitting import Part
from helixcode.domain.testcycle import suite_command
from helixcode.engine.manager import TaskManager
from helixcode.store.store import Store
from helixcode.store.tables import tasks

ITEMS = {"a.py": 5.0, "b.py": 3.0, "c.py": 2.0, "d.py": 2.0}


async def submit(store: Store, **task: Any) -> str:
    spec = parse_plan(
        {"tasks": [{"id": "big", "type": "porting", "title": "Port", "description": "Port it.", **task}]}
    )
    return (await store.create_job(spec, workdir="/tmp")).id


async def parts_of(store: Store, job_id: str) -> dict[str, Any]:
    return {t.key: t for t in await store.list_tasks(job_id) if t.parent_key == "big"}


async def test_agent_parts_get_their_files_and_a_description_that_lists_them(store: Store) -> None:
    job_id = await submit(store, run={"agent": {"max_rounds": 3, "on_conflict": "debug"}})
    keys = await TaskManager(store).split(job_id, "big", ITEMS, parts=2)
    parts = await parts_of(store, job_id)
    assert sorted(parts) == keys == ["big.1", "big.2"]
    seen: list[str] = []
    for key in keys:
        run = load_run(parts[key].run)
        assert isinstance(run, AgentRun)
        files = run.agent.files or []
        seen += files
        assert parts[key].run == {"agent": {"max_rounds": 3, "on_conflict": "debug", "files": files}}
        listing = "\n".join(f"- {f}" for f in files)
        assert parts[key].description == f"Port it.\n\nOnly these items:\n{listing}"
        assert parts[key].requires == ("git", "llm", "sandbox")
    assert sorted(seen) == sorted(ITEMS), "every item in exactly one part"


async def test_test_parts_append_their_items_to_the_test_command(store: Store) -> None:
    job_id = await submit(store, type="testing", run={"tests": {"command": "pytest -q", "rounds": 1}})
    await store.split_task(job_id, "big", [Part(("t_a.py", "t_b.py"), 2.0), Part(("t_c.py",), 1.0)])
    parts = await parts_of(store, job_id)
    commands = []
    for key in ("big.1", "big.2"):
        run = load_run(parts[key].run)
        assert isinstance(run, TestCycleRun)
        assert (run.tests.rounds, run.tests.command) == (1, "pytest -q")
        commands.append(suite_command(run.tests))
    assert commands == ["pytest -q t_a.py t_b.py", "pytest -q t_c.py"]


async def test_shell_and_python_parts_carry_their_items(store: Store) -> None:
    for run, model in (
        ({"shell": "echo $HELIX_ITEMS"}, ShellRun),
        ({"python": "m:f", "args": {"x": 1}}, PythonRun),
    ):
        job_id = await submit(store, run=run)
        await store.split_task(job_id, "big", [Part(("x",), 1.0), Part(("y", "z"), 2.0)])
        parts = await parts_of(store, job_id)
        assert [parts[k].run["items"] for k in ("big.1", "big.2")] == [["x"], ["y", "z"]]
        assert all(isinstance(load_run(p.run), model) for p in parts.values())


async def test_a_task_stored_with_old_keys_splits_into_clean_parts(store: Store) -> None:
    job_id = await submit(store)
    async with store._write() as conn:
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.job_id == job_id)
            .values(run={"agent": {"max_round": 9, "model": "m"}, "items": ["old"]})
        )
    await store.split_task(job_id, "big", [Part(("x",), 1.0)])
    assert (await parts_of(store, job_id))["big.1"].run == {"agent": {"model": "m", "files": ["x"]}}
