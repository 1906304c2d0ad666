"""Every model call is recorded with the attempt it was made for, its tokens and its cost in USD.

A real ``helix worker`` runs an agent task driven by the scripted model, served under a priced model's
name (``gpt-4o-mini``, in the ``genai-prices`` table); the job's usage and cost are read back from the
store and checked against the table. A provider priced in config uses that price instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from helixcode.config import DatabaseSettings, Settings
from helixcode.llm.usage import Price, call_cost
from helixcode.store.store import Store
from tests.acceptance.conftest import Cli
from tests.acceptance.test_sandbox_escapes import make_repo
from tests.integration.agent.conftest import git
from tests.scripted_model import ScriptedModel

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox")]


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    server = ScriptedModel().start()
    yield server
    server.stop()


def toml(model: ScriptedModel, name: str, extra: str = "") -> str:
    return (
        "[llm]\nembedded = false\n\n[providers.acct]\n"
        f'type = "openai"\nbase_url = "{model.url}/v1"\nmodels = ["{name}"]\n'
        'capabilities = ["tools", "json_schema"]\ncontext_length = 32000\n' + extra
    )


async def usage_of(db_url: str, job: str) -> tuple[dict[str, object], list[dict[str, object]]]:
    store = await Store.open(Settings(database=DatabaseSettings(url=db_url)), upgrade=False)
    try:
        total = (await store.job_usage(job)).to_dict()
        per_task = [u.to_dict() for u in (await store.usage_by_task(job)).values()]
    finally:
        await store.aclose()
    return total, per_task


@pytest.mark.parametrize(
    ("name", "extra", "price"),
    [
        ("gpt-4o-mini", "", None),
        ("in-house-7b", "price_input = 2.0\nprice_output = 6.0\n", Price(2.0, 6.0)),
    ],
    ids=["pricing-table", "config-price"],
)
def test_a_jobs_calls_are_recorded_with_tokens_and_cost(
    cli: Cli, model: ScriptedModel, tmp_path: Path, name: str, extra: str, price: Price | None
) -> None:
    repo = make_repo(tmp_path)
    (cli.cwd / "helix.toml").write_text(toml(model, name, extra))
    model.script("PRICED", [("write_file", {"path": "a.txt", "content": "a\n"})])
    plan = {"workdir": str(repo), "tasks": [{"id": "a", "type": "building", "title": "PRICED"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    job = cli.json("submit", str(tmp_path / "plan.json"))["id"]
    cli("worker", "--exit-when-idle", timeout=120)
    assert cli.json("status", job)["status"] == "succeeded"
    total, [task] = asyncio.run(usage_of(cli.env["HELIX_DATABASE_URL"], job))
    calls = len([r for r in model.requests if r.get("messages")])
    assert total["calls"] == calls == task["calls"]
    assert total["prompt_tokens"] == 10 * calls  # the scripted model reports 10 + 10 per reply
    assert total["completion_tokens"] == 10 * calls
    if price is None:
        one = float(
            calc_price(Usage(input_tokens=10, output_tokens=10), name, provider_id="openai").total_price
        )
    else:
        one = (10 * price.input + 10 * price.output) / 1e6
    assert total["cost_usd"] == pytest.approx(one * calls)
    assert total["unpriced_calls"] == 0
    shown = cli.json("status", job)  # what a person and a script see
    assert shown["tokens"] == 20 * calls
    assert shown["cost_usd"] == pytest.approx(one * calls, abs=1e-6)
    assert "model calls" in cli("status", job).stdout
    [listed] = cli.json("tasks", job)  # per task
    assert listed["tokens"] == 20 * calls
    assert listed["cost_usd"] == pytest.approx(one * calls, abs=1e-6)
    assert "tokens" in cli("tasks", job).stdout
    usage_events = [e for e in cli.json("events", job) if e["kind"] == "model_usage"]  # per attempt, live
    assert [e["details"]["calls"] for e in usage_events] == [calls]
    assert usage_events[0]["details"]["tokens"] == 20 * calls
    assert usage_events[0]["details"]["cost_usd"] == pytest.approx(one * calls, abs=1e-6)


def test_costs_by_kind() -> None:
    assert call_cost("local", "SmolLM2-135M", 1000, 500) == 0.0  # the embedded model
    assert call_cost("llamacpp", "qwen2.5-7b", 1000, 500) is None  # nobody knows: not a guess
    assert call_cost("openai", "no-such-model-xyz", 1000, 500) is None
    assert call_cost("openai", "gpt-4o-mini", 1000, 500) == pytest.approx(
        float(
            calc_price(
                Usage(input_tokens=1000, output_tokens=500), "gpt-4o-mini", provider_id="openai"
            ).total_price
        )
    )
    assert call_cost("ollama", "m", 1_000_000, 1_000_000, 500_000, Price(1.0, 2.0, 0.1)) == pytest.approx(
        0.5 + 0.05 + 2.0
    )


def test_a_job_that_reaches_its_budget_pauses_and_a_raised_budget_finishes_it(
    cli: Cli, model: ScriptedModel, tmp_path: Path
) -> None:
    """Each scripted call costs (10 x $2 + 10 x $6) per million tokens = $0.00008. With max_cost
    $0.00015 the second call reaches it: the job pauses with an event naming the budget, the task's
    next call is refused and the task handed back (not failed); resuming with a raised budget
    continues the same conversation from its checkpoint to the end."""
    repo = make_repo(tmp_path)
    (cli.cwd / "helix.toml").write_text(toml(model, "in-house-7b", "price_input = 2.0\nprice_output = 6.0\n"))
    writes = [("write_file", {"path": f"f{i}.txt", "content": f"{i}\n"}) for i in range(4)]
    model.script("BUDGET", writes)
    plan = {
        "workdir": str(repo),
        "max_cost": 0.00015,
        "tasks": [{"id": "a", "type": "building", "title": "BUDGET", "run": {"agent": {"max_rounds": 8}}}],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    job = cli.json("submit", str(tmp_path / "plan.json"))["id"]
    cli("worker", "--exit-when-idle", timeout=120)
    paused = cli.json("status", job)
    assert paused["status"] == "paused"
    assert paused["pause_reason"].startswith("budget reached: $0.0002 of max_cost $0.00015")
    [task] = cli.json("tasks", job)
    assert task["status"] == "ready"  # handed back, not failed
    assert task["attempts"] == 1
    events = cli.json("events", job)
    assert [e["details"].get("budget") for e in events if e["kind"] == "paused"] == [True]
    assert any(e["kind"] == "requeued" and "budget reached" in e["details"]["reason"] for e in events)
    calls_before = len(model.requests)
    assert calls_before == 2  # no call started after the budget was reached

    cli("resume", job, "--raise-budget", "1")
    cli("worker", "--exit-when-idle", timeout=120)
    done = cli.json("status", job)
    assert done["status"] == "succeeded"
    assert done["max_cost"] == pytest.approx(1.00015)
    assert done["cost_usd"] == pytest.approx(0.00008 * len(model.requests))
    assert len(model.requests) == 5  # the four writes and finish: the conversation went on
    for i in range(4):  # nothing lost: every write of both attempts landed on the job's branch
        assert git(repo, "show", f"helix/{job}:f{i}.txt") == f"{i}\n"
    assert cli.json("tasks", job)[0]["attempts"] == 2
