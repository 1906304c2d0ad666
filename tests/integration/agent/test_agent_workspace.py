"""Worktrees per task, merges of dependencies, the job branch, and conflicts that name their files."""

from __future__ import annotations

from pathlib import Path

import pytest

from helixcode.agent.workspace import MergeConflict, Workspace, branch_name, job_branch
from tests.integration.agent.conftest import git


def test_agent_tasks_branch_from_dependencies_and_merge_into_the_job(repo: Path) -> None:
    ws = Workspace(repo, "job1")
    base = ws.ensure_base_sync()
    a = ws.prepare_sync("a", [])
    assert a.base == base
    assert a.path.is_dir()
    assert ".git" in a.path.parts
    (a.path / "a.txt").write_text("from a\n")
    assert ws.commit_sync(a, "wip a") is not None
    assert ws.commit_sync(a, "nothing changed") is None
    ws.commit_sync(a, "a: done", allow_empty=True)
    b = ws.prepare_sync("b", [])
    (b.path / "b.txt").write_text("from b\n")
    ws.commit_sync(b, "b: done")
    ws.integrate_sync("a")
    ws.integrate_sync("b")
    c = ws.prepare_sync("c", [branch_name("job1", "a"), branch_name("job1", "b")])
    assert (c.path / "a.txt").is_file()
    assert (c.path / "b.txt").is_file()
    (c.path / "c.txt").write_text("from c\n")
    ws.commit_sync(c, "c: done")
    ws.integrate_sync("c")
    files = git(repo, "ls-tree", "-r", "--name-only", job_branch("job1")).split()
    assert {"a.txt", "b.txt", "c.txt", "app.py"} <= set(files)
    for key in ("a", "b", "c"):
        tip = git(repo, "rev-parse", branch_name("job1", key)).strip()
        assert git(repo, "merge-base", "--is-ancestor", tip, job_branch("job1")) == ""
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched
    ws.release_sync(c)
    assert not c.path.exists()


def test_agent_conflicts_name_the_files(repo: Path) -> None:
    ws = Workspace(repo, "job2")
    for key, text in (("x", "x wins\n"), ("y", "y wins\n")):
        t = ws.prepare_sync(key, [])
        (t.path / "app.py").write_text(text)
        (t.path / f"{key}.txt").write_text(key)
        ws.commit_sync(t, f"{key}: done")
    with pytest.raises(MergeConflict) as caught:
        ws.prepare_sync("z", [branch_name("job2", "x"), branch_name("job2", "y")])
    assert caught.value.files == ["app.py"]
    ws.integrate_sync("x")
    with pytest.raises(MergeConflict, match=r"app\.py"):
        ws.integrate_sync("y")
    assert git(repo, "show", f"{job_branch('job2')}:app.py") == "x wins\n"  # nothing half-merged


def test_agent_resumed_worktree_matches_the_checkpoint(repo: Path) -> None:
    ws = Workspace(repo, "job3")
    t = ws.prepare_sync("t", [])
    (t.path / "one.txt").write_text("1")
    checkpointed = ws.commit_sync(t, "wip round 1")
    (t.path / "two.txt").write_text("2")
    ws.commit_sync(t, "wip round 2 (crashed before its checkpoint)")
    (t.path / "scratch.txt").write_text("uncommitted")
    again = ws.prepare_sync("t", [], resume_commit=checkpointed)
    assert again.resumed
    assert again.path == t.path
    assert (again.path / "one.txt").exists()
    assert not (again.path / "two.txt").exists()
    assert not (again.path / "scratch.txt").exists()


def test_agent_not_a_repository(tmp_path: Path) -> None:
    from helixcode.agent.workspace import GitError

    with pytest.raises(GitError, match="not a git repository"):
        Workspace(tmp_path, "j").ensure_base_sync()


def test_agent_conflicts_recorded_with_markers_keep_both_sides(repo: Path) -> None:
    ws = Workspace(repo, "job4")
    tips = {}
    for key, text in (("x", "x wins\n"), ("y", "y wins\n")):
        t = ws.prepare_sync(key, [])
        (t.path / "app.py").write_text(text)
        tips[key] = ws.commit_sync(t, f"{key}: done")
        ws.release_sync(t)
    ws.integrate_sync("x")
    before = git(repo, "rev-parse", job_branch("job4")).strip()
    record = ws.record_conflict_sync("y", [branch_name("job4", "y"), job_branch("job4")])
    assert record.files == ["app.py"]
    assert [ref for ref, _, _ in record.sides] == [branch_name("job4", "y"), job_branch("job4")]
    assert git(repo, "rev-parse", branch_name("job4", "y")).strip() == record.commit
    text = git(repo, "show", f"{record.commit}:app.py")
    assert f"<<<<<<< refs/heads/{branch_name('job4', 'y')}\ny wins\n=======\nx wins\n>>>>>>> " in text
    for tip in (tips["y"], before):  # nothing lost: the task's work and the job branch are both in it
        assert git(repo, "merge-base", "--is-ancestor", str(tip), record.commit) == ""
    assert git(repo, "rev-parse", job_branch("job4")).strip() == before  # the job branch is untouched
