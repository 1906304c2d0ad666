"""`helix graph`'s renderings of a task graph: Mermaid, Graphviz dot and JSON.

Structure is checked everywhere: a node per task, grouped under its parent (nested), an edge per
dependency, a class per status, and titles that cannot break the syntax. Where the real tools are at
hand the text is also parsed by them: Graphviz's `dot -Tsvg` when `dot` is on PATH, Mermaid's own
parser when ``HELIXTEST_MERMAID_DIR`` names a folder with ``mermaid`` and ``jsdom`` installed (see
``tests/mermaid_parse.mjs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from helixcode.domain.enums import Criticality, Priority, TaskStatus, TaskType
from helixcode.domain.graph_render import TaskGraph, render, to_dot, to_json, to_mermaid
from helixcode.domain.models import Task

S = TaskStatus
BASE = Task(
    id=0, job_id="j1", key="", type=TaskType.BUILDING, title="", description="", priority=Priority.NORMAL,
    criticality=Criticality.NORMAL, status=S.READY, requires=(), depends_on=(), run={}, max_attempts=3,
    attempts=0, failures=0, lease_losses=0, timeout=None, progress=0.0, progress_message=None,
    parent_key=None, weight=1.0, created_at=0.0, ready_at=None, started_at=None, finished_at=None,
    next_attempt_at=None, lease_owner=None, lease_expires_at=None, last_error=None,
)  # fmt: skip
NASTY = 'Plan "it" <now> #1 [x] {y} & a|b\\c; end'


def task(key: str, status: TaskStatus, *deps: str, **fields: Any) -> Task:
    return replace(
        BASE, key=key, title=fields.pop("title", key.upper()), status=status, depends_on=deps, **fields
    )


#: A planner (whose key is a Mermaid keyword) with planned subtasks, one of them split in two parts,
#: and top-level tasks after it; a dependency outside the list is left out.
TASKS = [
    task("end", S.WAITING, title=NASTY, type=TaskType.PLANNING),
    task("end.a-b", S.RUNNING, parent_key="end", progress=0.4),
    task("end.a_b", S.WAITING, "end.a-b", parent_key="end"),
    task("end.a_b.1", S.FAILED, parent_key="end.a_b", last_error="boom"),
    task("end.a_b.2", S.SUCCEEDED, parent_key="end.a_b"),
    task("graph", S.BLOCKED, "end", "gone", title="ünïcode → ✓ `code` **b**"),
    task("subgraph", S.UPSTREAM_FAILED, "graph"),
]
JOB = {"id": "j1", "name": 'demo "q"', "status": "running"}
GRAPH = TaskGraph.of(TASKS, JOB)


def test_the_graph_keeps_tasks_parents_and_dependencies() -> None:
    assert [n.key for n in GRAPH.nodes] == [t.key for t in TASKS]
    assert {(e.dependency, e.dependent) for e in GRAPH.edges} == {
        ("end.a-b", "end.a_b"), ("end", "graph"), ("graph", "subgraph"),
    }  # fmt: skip
    children = {k: [n.key for n in v] for k, v in GRAPH.children().items()}
    assert children == {
        None: ["end", "graph", "subgraph"],
        "end": ["end.a-b", "end.a_b"],
        "end.a_b": ["end.a_b.1", "end.a_b.2"],
    }  # fmt: skip
    done = next(n for n in GRAPH.nodes if n.key == "end.a_b.2")
    assert done.progress == 1.0  # a finished task is whole, whatever it last reported


def test_json_round_trips() -> None:
    text = to_json(GRAPH)
    assert TaskGraph.from_dict(json.loads(text)) == GRAPH
    data = json.loads(render(TASKS, "json", JOB))
    assert data["job"] == JOB
    assert data["nodes"][3] == {
        "key": "end.a_b.1", "title": "END.A_B.1", "type": "building", "status": "failed", "progress": 0.0,
        "parent": "end.a_b",
    }  # fmt: skip
    assert {"dependency": "end", "dependent": "graph"} in data["edges"]


def _mermaid_ids(text: str) -> dict[str, tuple[str, str]]:
    """Node id -> (label, class) for every node line."""
    nodes = re.findall(r'^\s*(t_\w+)\["([^"]*)"\]:::(\w+)$', text, flags=re.M)
    return {i: (label, cls) for i, label, cls in nodes}


def test_mermaid_structure() -> None:
    text = to_mermaid(GRAPH)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert lines[1].strip().startswith("%% job j1 running")
    nodes = _mermaid_ids(text)
    assert len(nodes) == len(TASKS)  # ids are unique although end.a-b and end.a_b clean up alike
    assert nodes["t_end"][1] == "waiting"
    assert nodes["t_end_a_b"][0].endswith("running 40%")
    # A title cannot end the label: quotes and angle brackets are entity codes, no raw quote is left.
    assert nodes["t_end"][0].startswith("end<br/>Plan #quot;it#quot; #lt;now#gt; #35;1 [x]")
    # Groups: balanced, nested, each child inside its parent's group.
    depth, inside = 0, {}
    stack: list[str] = []
    for line in lines:
        word = line.split()[0] if line.split() else ""
        if word == "subgraph":
            stack.append(line.split()[1].split("[")[0])
            depth += 1
        elif word == "end":
            stack.pop()
            depth -= 1
        elif match := re.match(r"\s*(t_\w+)\[", line):
            inside[match.group(1)] = list(stack)
        assert depth >= 0
    assert depth == 0
    assert inside["t_end"] == ["g_t_end"]
    assert inside["t_graph"] == []
    assert inside["t_end_a_b_1"] == ["g_t_end", "g_t_end_a_b_2"]  # end.a_b.1, in end.a_b, in end
    edges = re.findall(r"^\s*(t_\w+) --> (t_\w+)$", text, flags=re.M)
    assert len(edges) == 3
    assert all(a in nodes and b in nodes for a, b in edges)
    defined = set(re.findall(r"^\s*classDef (\w+) ", text, flags=re.M))
    assert defined == {cls for _, cls in nodes.values()}


def test_mermaid_top_down() -> None:
    assert to_mermaid(GRAPH, "TB").startswith("flowchart TB\n")


def test_mermaid_parses_with_mermaid(tmp_path: Path) -> None:
    folder = os.environ.get("HELIXTEST_MERMAID_DIR")
    if not folder or not shutil.which("node"):
        pytest.skip(
            "Mermaid's parser is not at hand (set HELIXTEST_MERMAID_DIR; see tests/mermaid_parse.mjs)"
        )
    script = Path(folder) / "helix_mermaid_parse.mjs"
    shutil.copy(Path(__file__).parents[1] / "mermaid_parse.mjs", script)
    good, bad = tmp_path / "good.mmd", tmp_path / "bad.mmd"
    good.write_text(to_mermaid(GRAPH))
    bad.write_text("flowchart LR\n  a --> \n")
    ok = subprocess.run(["node", str(script), str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().startswith("flowchart")
    assert subprocess.run(["node", str(script), str(bad)], capture_output=True, timeout=60).returncode == 1


def test_dot_structure() -> None:
    text = to_dot(GRAPH)
    assert text.startswith("digraph job {\n")
    assert text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    assert re.findall(r"subgraph (cluster_\w+) \{", text) == ["cluster_t_end", "cluster_t_end_a_b_2"]
    assert 'label="j1 running demo \\"q\\""' in text
    assert 'class="upstream_failed"' in text
    assert 'fillcolor="#fca5a5"' in text
    assert 'Plan \\"it\\" <now> #1 [x] {y} & a|b\\\\c; end' in text
    assert len(re.findall(r"^\s*t_\w+ -> t_\w+;$", text, flags=re.M)) == 3


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz's dot is not installed")
def test_dot_renders_with_graphviz() -> None:
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(GRAPH), capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert svg.count('class="cluster') == 2
    assert svg.count('class="node') == len(TASKS)
    assert svg.count('class="edge') == 3
    assert "ünïcode" in svg


def test_the_readme_sample_is_what_helix_graph_prints() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    sample = readme.split("### Watching the fleet", 1)[1].split("```mermaid\n", 1)[1].split("```", 1)[0]
    tasks = [
        task("build", S.SUCCEEDED, title="Build the library"),
        task("test", S.WAITING, "build", title="Run the test suite", type=TaskType.TESTING),
        task("test.1", S.SUCCEEDED, parent_key="test", title="Tests, part 1", type=TaskType.TESTING),
        task(
            "test.2", S.RUNNING, parent_key="test", title="Tests, part 2", type=TaskType.TESTING, progress=0.4
        ),
        task("ship", S.BLOCKED, "test", title="Package the release", type=TaskType.DEPLOYMENT),
    ]
    job = {"id": "3f9c2a1b7d04", "name": "release", "status": "running"}
    assert render(tasks, "mermaid", job) == sample
