"""`helix submit` refuses a misspelt agent option; `helix split` gives each agent part its files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli

PLAN = """
tasks:
  - id: port
    type: porting
    title: Port the modules
    run: {agent: {%s: 3}}
"""


@pytest.mark.slow
def test_split_an_agent_task_from_the_cli(
    cli: Cli, write_plan: Callable[[str, str], Path], tmp_path: Path
) -> None:
    refused = cli("submit", str(write_plan("bad.yaml", PLAN % "max_round")), check=False)
    assert refused.returncode == 2
    assert "task 'port' (tasks[0]): unknown field 'run.agent.max_round'" in refused.stdout + refused.stderr

    job_id = cli.json("submit", str(write_plan("ok.yaml", PLAN % "max_rounds")), "--workdir", str(cli.cwd))[
        "id"
    ]
    items = tmp_path / "items.json"
    items.write_text(json.dumps(["a.py", "b.py", "c.py"]))
    cli("split", job_id, "port", "--items", str(items), "--parts", "2")
    parts = {t["key"]: t for t in cli.json("tasks", job_id) if t["key"].startswith("port.")}
    files = [parts[k]["run"]["agent"]["files"] for k in ("port.1", "port.2")]
    assert sorted(f for part in files for f in part) == ["a.py", "b.py", "c.py"]
    for key, mine in zip(("port.1", "port.2"), files, strict=True):
        assert parts[key]["run"]["agent"]["max_rounds"] == 3
        assert parts[key]["description"].endswith("Only these items:\n" + "\n".join(f"- {f}" for f in mine))
