"""What the tools refuse an agent is recorded: one ``sandbox_refused`` event per attempt with the
counts by kind, and the fleet's ``helix_sandbox_refusals_total`` counter after the metrics rollup.

A real ``helix worker`` runs an agent task driven by the scripted model, which asks for a denied
program and for paths outside the worktree; the model reads each refusal and the task still succeeds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from helixcode.config import DatabaseSettings, Settings
from helixcode.store.store import Store
from tests.acceptance.conftest import Cli
from tests.acceptance.test_llm_usage import toml
from tests.acceptance.test_sandbox_escapes import make_repo
from tests.scripted_model import ScriptedModel

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox")]


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel().start()
    yield server
    server.stop()


async def refusal_counters(db_url: str) -> dict[str, float]:
    store = await Store.open(Settings(database=DatabaseSettings(url=db_url)), upgrade=False)
    try:
        await store.rollup_metrics()
        snapshot = await store.metrics_snapshot()
    finally:
        await store.aclose()
    return {s.labels["kind"]: s.value for s in snapshot.samples if s.name == "helix_sandbox_refusals_total"}


def test_refusals_are_counted_per_attempt_and_for_the_fleet(
    cli: Cli, model: ScriptedModel, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    (cli.cwd / "helix.toml").write_text(toml(model, "gpt-4o-mini"))
    model.script(
        "REFUSED",
        [
            ("run_command", {"command": "curl https://example.com"}),
            ("read_file", {"path": "../../etc/passwd"}),
            ("write_file", {"path": ".git/config", "content": "[core]\n"}),
            ("write_file", {"path": "ok.txt", "content": "ok\n"}),
        ],
    )
    plan = {"workdir": str(repo), "tasks": [{"id": "a", "type": "building", "title": "REFUSED"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    job = cli.json("submit", str(tmp_path / "plan.json"))["id"]
    cli("worker", "--exit-when-idle", timeout=120)
    assert cli.json("status", job)["status"] == "succeeded"
    results = model.tool_results("REFUSED")
    assert all(r.startswith("refused") for r in results[:3]), results
    [refused] = [e for e in cli.json("events", job) if e["kind"] == "sandbox_refused"]
    assert refused["details"]["counts"] == {"command": 1, "path": 2}
    assert refused["task_key"] == "a"
    assert asyncio.run(refusal_counters(cli.env["HELIX_DATABASE_URL"])) == {"command": 1.0, "path": 2.0}
