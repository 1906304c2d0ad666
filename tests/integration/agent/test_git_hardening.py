"""The worker's own git commands run no hook and no program the repository's config names, while the
user's own (global) configuration keeps working. Real git; each planted program writes a marker file."""

from __future__ import annotations

from pathlib import Path

import pytest

from helixcode.agent.gitcmd import run_git
from helixcode.agent.workspace import Workspace, branch_name
from tests.integration.agent.conftest import git

HOOKS = ("post-commit", "post-checkout", "pre-commit", "reference-transaction", "post-merge")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


def program(path: Path, marker: Path, then: str = "") -> str:
    """An executable script that appends its name to ``marker``, then runs ``then``; its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0" >> "{marker}"\n{then}\n')
    path.chmod(0o755)
    return str(path)


def plant_hooks(hooks: Path, marker: Path) -> None:
    for name in HOOKS:
        program(hooks / name, marker)


def proves_armed(marker: Path) -> None:
    """The planted program did run through plain git: the test checks something real."""
    assert marker.exists()
    marker.unlink()


def test_hooks_in_the_git_dir_never_run(repo: Path, marker: Path) -> None:
    plant_hooks(repo / ".git" / "hooks", marker)
    git(repo, "update-ref", "refs/heads/armed", "HEAD")
    proves_armed(marker)
    (repo / "new.txt").write_text("new\n")
    run_git("add", "-A", cwd=repo)
    run_git("commit", "-q", "-m", "with hooks planted", cwd=repo)
    run_git("update-ref", "refs/heads/other", "HEAD", cwd=repo)
    run_git("worktree", "add", "-q", str(repo.parent / "wt"), "armed", cwd=repo)
    run_git("merge", "-q", "--ff-only", "main", cwd=repo.parent / "wt")
    assert (repo.parent / "wt" / "new.txt").is_file()
    assert not marker.exists()


def test_the_workspace_runs_no_hook(repo: Path, marker: Path) -> None:
    plant_hooks(repo / ".git" / "hooks", marker)
    ws = Workspace(repo, "hooked")
    for key in ("a", "b"):
        task = ws.prepare_sync(key, [])
        (task.path / f"{key}.txt").write_text(key)
        ws.commit_sync(task, f"{key}: done")
        ws.integrate_sync(key)
    merged = ws.prepare_sync("c", [branch_name("hooked", "a"), branch_name("hooked", "b")])
    ws.release_sync(merged)
    assert not marker.exists()


def test_a_repository_hooks_path_is_ignored(repo: Path, marker: Path, tmp_path: Path) -> None:
    plant_hooks(tmp_path / "their-hooks", marker)
    git(repo, "config", "core.hooksPath", str(tmp_path / "their-hooks"))
    git(repo, "commit", "-q", "--allow-empty", "-m", "armed")
    proves_armed(marker)
    run_git("commit", "-q", "--allow-empty", "-m", "x", cwd=repo)
    run_git("update-ref", "refs/heads/other", "HEAD", cwd=repo)
    run_git("worktree", "add", "-q", str(tmp_path / "wt"), "other", cwd=repo)
    assert not marker.exists()


@pytest.mark.parametrize("scope", ["--local", "--worktree"])
def test_a_repository_fsmonitor_is_ignored(repo: Path, marker: Path, tmp_path: Path, scope: str) -> None:
    cwd = repo
    if scope == "--worktree":  # a worktree's own config.worktree, read after the common config
        git(repo, "config", "extensions.worktreeConfig", "true")
        git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "wt"))
        cwd = tmp_path / "wt"
    run_git("status", cwd=cwd)  # what was read before the config changed must not be reused
    git(cwd, "config", scope, "core.fsmonitor", program(tmp_path / "fsmonitor", marker))
    (cwd / "app.py").write_text("changed\n")
    git(cwd, "status")
    proves_armed(marker)
    assert "app.py" in run_git("status", "--porcelain", cwd=cwd).stdout
    assert not marker.exists()


def test_a_repository_filter_is_ignored_and_files_stored_as_they_are(
    repo: Path, marker: Path, tmp_path: Path
) -> None:
    evil = program(tmp_path / "evil", marker, then="tr a-z A-Z")
    git(repo, "config", "filter.evil.clean", evil)
    git(repo, "config", "filter.evil.smudge", evil)
    git(repo, "config", "filter.evil.required", "true")
    (repo / ".gitattributes").write_text("* filter=evil\n")
    (repo / "notes.txt").write_text("lower case\n")
    run_git("add", "-A", cwd=repo)
    assert not marker.exists()
    assert run_git("show", ":notes.txt", cwd=repo).stdout == "lower case\n"
    run_git("commit", "-q", "-m", "filtered files", cwd=repo)
    run_git("worktree", "add", "-q", "-b", "side", str(tmp_path / "wt"), cwd=repo)  # smudges
    assert (tmp_path / "wt" / "notes.txt").read_text() == "lower case\n"
    assert not marker.exists()
    git(repo, "hash-object", "notes.txt")
    proves_armed(marker)


def test_a_driver_name_with_an_equals_sign_is_neutralised(repo: Path, marker: Path, tmp_path: Path) -> None:
    """``-c filter.a=b.clean=`` would set ``filter.a``: such a name must still be overridden."""
    git(repo, "config", "filter.a=b.clean", program(tmp_path / "evil", marker, then="cat"))
    git(repo, "config", "filter.a=b.required", "true")
    (repo / ".gitattributes").write_text("* filter=a=b\n")
    (repo / "notes.txt").write_text("text\n")
    git(repo, "hash-object", "notes.txt")
    proves_armed(marker)
    run_git("add", "-A", cwd=repo)
    assert not marker.exists()


def test_a_repository_merge_driver_is_not_run(repo: Path, marker: Path, tmp_path: Path) -> None:
    git(repo, "config", "merge.evil.driver", program(tmp_path / "driver", marker) + " %O %A %B")
    (repo / ".gitattributes").write_text("* merge=evil\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "attributes")
    for branch, text in (("ours", "ours\n"), ("theirs", "theirs\n")):
        git(repo, "checkout", "-q", "-b", branch, "main")
        (repo / "app.py").write_text(text)
        git(repo, "commit", "-q", "-am", branch)
    git(repo, "merge-tree", "--write-tree", "ours", "theirs")
    proves_armed(marker)
    proc = run_git("merge-tree", "--write-tree", "ours", "theirs", cwd=repo, check=False)
    assert proc.returncode != 0  # no driver to run: the merge fails instead of succeeding blindly
    assert not marker.exists()


def test_a_config_include_is_followed(repo: Path, marker: Path, tmp_path: Path) -> None:
    included = tmp_path / "included.cfg"
    included.write_text("")
    git(repo, "config", "include.path", str(included))
    git(repo, "config", "includeIf.onbranch:nothing-here.path", "conditional.cfg")
    run_git("status", cwd=repo)
    included.write_text(f"[core]\n\tfsmonitor = {program(tmp_path / 'fsmonitor', marker)}\n")
    (repo / "app.py").write_text("changed\n")
    git(repo, "status")
    proves_armed(marker)
    run_git("status", cwd=repo)
    assert not marker.exists()
    # A conditional include counts whatever its condition: git may take it on another branch.
    included.write_text("")
    (repo / ".git" / "conditional.cfg").write_text(f"[core]\n\tfsmonitor = {tmp_path / 'fsmonitor'}\n")
    git(repo, "checkout", "-q", "-b", "nothing-here")
    git(repo, "status")
    proves_armed(marker)
    run_git("status", cwd=repo)
    assert not marker.exists()


def test_a_global_filter_still_runs(
    repo: Path, marker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "global.cfg"
    config.write_text('[filter "upper"]\n\tclean = tr a-z A-Z\n\trequired = true\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    (repo / ".gitattributes").write_text("*.txt filter=upper\n")
    (repo / "notes.txt").write_text("lower case\n")
    run_git("add", "-A", cwd=repo)
    assert run_git("show", ":notes.txt", cwd=repo).stdout == "LOWER CASE\n"
    # The repository defining the same filter does not replace the user's: theirs is undone, ours kept.
    git(repo, "config", "filter.upper.clean", program(tmp_path / "evil", marker, then="cat"))
    (repo / "more.txt").write_text("more\n")
    run_git("add", "-A", cwd=repo)
    assert run_git("show", ":more.txt", cwd=repo).stdout == "MORE\n"
    assert not marker.exists()
