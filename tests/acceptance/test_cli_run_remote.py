"""`helix run --repo URL`: the pool's workers clone a remote (a bare repository via ``file://``), push
their task branches and land the job branch there; a remote that cannot be reached is named, masked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli
from tests.acceptance.test_cli_run import sample_repo
from tests.integration.agent.conftest import git, model_missing


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_run_names_an_unreachable_remote_with_its_password_masked(cli: Cli) -> None:
    url = "https://alice:s3cret@127.0.0.1:9/team/repo.git"
    proc = cli("run", "do things", "--repo", url, "--no-live", check=False)
    assert proc.returncode == 2
    assert "https://alice:***@127.0.0.1:9/team/repo.git" in proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_run_on_a_remote_repository(cli: Cli, tmp_path: Path) -> None:
    if reason := model_missing():
        pytest.skip(reason)
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(sample_repo(tmp_path)), str(origin))
    proc = cli(
        "run", "Add a farewell(name) function to greet.py", "--repo", origin.as_uri(), "--workers", "2",
        "--max-subtasks", "2", "--tool-rounds", "2", "--max-tokens", "48", "--on-conflict", "debug",
        "--no-live", timeout=360,
    )  # fmt: skip
    job = cli.json("status")[0]
    assert job["status"] == "succeeded", proc.stdout
    assert job["workdir"] == origin.as_uri()
    branch = f"helix/{job['id']}"
    remote_refs = git(origin, "for-each-ref", "--format=%(refname:short)").split()
    assert branch in remote_refs  # landed on the remote, not only in a worker's cache
    tasks = cli.json("tasks", job["id"])
    assert len(tasks) >= 2
    for task in tasks:
        ref = f"helix/tasks/{job['id']}/{task['key']}"
        assert ref in remote_refs, ref
        merged = subprocess.run(["git", "merge-base", "--is-ancestor", ref, branch], cwd=origin)
        assert merged.returncode == 0, ref
    caches = list((cli.cwd / ".helix" / "repos").glob("*.git"))
    assert len(caches) == 1  # the pool's workers shared this machine's clone
