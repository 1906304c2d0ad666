"""A job's git workspace: one worktree and branch per task, merged without touching the user's checkout.

Layout, for job ``J`` on repository ``R`` (a local path for now)::

    refs/helix/J/base        the commit the job started from (created once, compare-and-swap)
    helix/tasks/J/<task>     each task's branch: its work-in-progress and final commits
    helix/J                  the job's branch: every finished task merged in, in finishing order
    <R's git dir>/helix/worktrees/J/<task>   the task's worktree (inside .git, so it never shows up
                                             in the user's ``git status``)

A task starts from the merge of its dependencies' branches (or, with none, from its parent's branch or
the base). Merges are computed with ``git merge-tree --write-tree`` (git >= 2.38) and recorded with
``commit-tree`` + a compare-and-swap ``update-ref``, so no checkout is needed and a conflict is reported
with the conflicting files named instead of being resolved silently. Structural operations (worktrees,
job-branch updates) hold a repository-wide file lock, so several worker processes on one machine can
share a repository.

The git calls block; the async methods run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from helixcode.errors import HelixError

__all__ = ["GitError", "MergeConflict", "TaskWorkspace", "Workspace", "branch_name", "job_branch"]

GIT_TIMEOUT = 120.0
IDENTITY = ("-c", "user.name=HelixCode", "-c", "user.email=helix@localhost", "-c", "commit.gpgsign=false")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class GitError(HelixError):
    """A git command failed; the message carries its stderr."""


class MergeConflict(GitError):
    """Branches that cannot be merged automatically; ``files`` names the conflicting paths."""

    def __init__(self, what: str, files: Sequence[str]) -> None:
        self.files = list(files)
        super().__init__(f"merge conflict {what}: {', '.join(self.files) or '(unknown files)'}")


def _ref_part(text: str) -> str:
    return _SAFE.sub("-", text).strip(".-") or "x"


def job_branch(job_id: str) -> str:
    return f"helix/{_ref_part(job_id)}"


def branch_name(job_id: str, task_key: str) -> str:
    """A task's branch. Not ``helix/<job>/<task>``: git cannot hold both ``helix/J`` and ``helix/J/x``."""
    return f"helix/tasks/{_ref_part(job_id)}/{_ref_part(task_key)}"


@dataclass(frozen=True, slots=True)
class TaskWorkspace:
    """A prepared worktree: where the agent works, on which branch, from which commit."""

    path: Path
    branch: str
    base: str
    resumed: bool


class Workspace:
    """Git operations for one job on one repository."""

    def __init__(self, repo: str | Path, job_id: str) -> None:
        self.repo = Path(repo).expanduser().resolve()
        self.job_id = job_id
        self._common: Path | None = None

    # -- plumbing -------------------------------------------------------------------------------

    def git(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_TERMINAL_PROMPT"] = "0"
        proc = subprocess.run(
            ["git", *IDENTITY, *args],
            cwd=cwd or self.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[:1000]}")
        return proc

    @property
    def common_dir(self) -> Path:
        if self._common is None:
            out = self.git("rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
            self._common = Path(out)
        return self._common

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        path = self.common_dir / "helix.lock"
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rev(self, ref: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None

    def worktree_path(self, task_key: str) -> Path:
        return self.common_dir / "helix" / "worktrees" / _ref_part(self.job_id) / _ref_part(task_key)

    @property
    def base_ref(self) -> str:
        return f"refs/helix/{_ref_part(self.job_id)}/base"

    # -- job level ------------------------------------------------------------------------------

    def ensure_base_sync(self, start: str = "HEAD") -> str:
        """The job's base commit: created from ``start`` the first time, the same commit afterwards."""
        if found := self.rev(self.base_ref):
            return found
        if not self.repo.is_dir() or self.git("rev-parse", "--git-dir", check=False).returncode:
            raise GitError(f"{self.repo} is not a git repository")
        commit = self.rev(start)
        if commit is None:
            raise GitError(f"{self.repo} has no commit at {start!r}: commit something first")
        # Create-only (old value all zeros): the first worker wins, the others read its choice.
        self.git("update-ref", self.base_ref, commit, "0" * 40, check=False)
        found = self.rev(self.base_ref)
        assert found is not None
        self.git("update-ref", f"refs/heads/{job_branch(self.job_id)}", found, "0" * 40, check=False)
        return found

    async def ensure_base(self, start: str = "HEAD") -> str:
        return await asyncio.to_thread(self.ensure_base_sync, start)

    def merged_commit_sync(self, refs: Sequence[str], what: str) -> str:
        """The commit merging ``refs`` (the first one's history first); ``MergeConflict`` if impossible."""
        commits = [c for c in dict.fromkeys(self._commit(r) for r in refs)]
        head = commits[0]
        for other in commits[1:]:
            head = self._merge_two(head, other, f"Merge {what}")
        return head

    def _commit(self, ref: str) -> str:
        found = self.rev(ref)
        if found is None:
            raise GitError(f"no commit at {ref!r}")
        return found

    def _merge_two(self, ours: str, theirs: str, message: str) -> str:
        if self._is_ancestor(theirs, ours):
            return ours
        if self._is_ancestor(ours, theirs):
            return theirs
        proc = self.git(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs, check=False
        )
        lines = proc.stdout.splitlines()
        if proc.returncode == 1:
            raise MergeConflict(
                message.removeprefix("Merge ").strip(), [ln for ln in lines[1:] if ln.strip()]
            )
        if proc.returncode != 0 or not lines:
            raise GitError(f"git merge-tree failed: {proc.stderr.strip()[:1000]}")
        tree = lines[0].strip()
        return self.git("commit-tree", tree, "-p", ours, "-p", theirs, "-m", message).stdout.strip()

    def _is_ancestor(self, a: str, b: str) -> bool:
        return self.git("merge-base", "--is-ancestor", a, b, check=False).returncode == 0

    def integrate_sync(self, task_key: str) -> str:
        """Merge a task's branch into the job's branch (compare-and-swap under the lock); the new tip."""
        branch = branch_name(self.job_id, task_key)
        target = f"refs/heads/{job_branch(self.job_id)}"
        with self._locked():
            tip = self.rev(target) or self.ensure_base_sync()
            merged = self._merge_two(
                tip, self._commit(branch), f"Merge {branch} into {job_branch(self.job_id)}"
            )
            if merged != tip:
                self.git("update-ref", target, merged, tip)
            return merged

    async def integrate(self, task_key: str) -> str:
        return await asyncio.to_thread(self.integrate_sync, task_key)

    # -- task level -----------------------------------------------------------------------------

    def prepare_sync(
        self, task_key: str, sources: Sequence[str], resume_commit: str | None = None
    ) -> TaskWorkspace:
        """A clean worktree on the task's branch.

        A new branch starts from the merge of ``sources`` (branch names; the base when empty). An
        existing branch (a resumed attempt) is kept, and reset to ``resume_commit`` when given, so the
        files match the checkpointed conversation.
        """
        branch = branch_name(self.job_id, task_key)
        path = self.worktree_path(task_key)
        with self._locked():
            base = self.ensure_base_sync()
            existing = self.rev(f"refs/heads/{branch}")
            if existing is None:
                start = self.merged_commit_sync(sources, f"dependencies of {task_key}") if sources else base
                self.git("branch", branch, start)
            else:
                start = existing
            self._drop_worktree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.git("worktree", "add", "--force", str(path), branch)
        if resume_commit and existing is not None and self.rev(resume_commit):
            self.git("reset", "--hard", resume_commit, cwd=path)
            self.git("clean", "-fdq", cwd=path)
        return TaskWorkspace(path=path, branch=branch, base=start, resumed=existing is not None)

    async def prepare(
        self, task_key: str, sources: Sequence[str], resume_commit: str | None = None
    ) -> TaskWorkspace:
        return await asyncio.to_thread(self.prepare_sync, task_key, sources, resume_commit)

    def _drop_worktree(self, path: Path) -> None:
        if path.exists():
            self.git("worktree", "remove", "--force", str(path), check=False)
            shutil.rmtree(path, ignore_errors=True)
        self.git("worktree", "prune", check=False)

    def commit_sync(self, ws: TaskWorkspace, message: str, *, allow_empty: bool = False) -> str | None:
        """Commit everything in the worktree; the new commit, or None when nothing changed."""
        self.git("add", "-A", cwd=ws.path)
        staged = self.git("diff", "--cached", "--quiet", cwd=ws.path, check=False).returncode != 0
        if not staged and not allow_empty:
            return None
        args = ["commit", "-q", "--no-verify", "-m", message] + (["--allow-empty"] if allow_empty else [])
        self.git(*args, cwd=ws.path)
        return self.git("rev-parse", "HEAD", cwd=ws.path).stdout.strip()

    async def commit(self, ws: TaskWorkspace, message: str, *, allow_empty: bool = False) -> str | None:
        return await asyncio.to_thread(self.commit_sync, ws, message, allow_empty=allow_empty)

    def head_sync(self, ws: TaskWorkspace) -> str:
        return self.git("rev-parse", "HEAD", cwd=ws.path).stdout.strip()

    def changed_files_sync(self, ws: TaskWorkspace) -> list[str]:
        out = self.git("diff", "--name-only", ws.base, "HEAD", cwd=ws.path, check=False).stdout
        return [line for line in out.splitlines() if line]

    def release_sync(self, ws: TaskWorkspace) -> None:
        """Remove a finished task's worktree (its branch stays)."""
        with self._locked():
            self._drop_worktree(ws.path)

    async def release(self, ws: TaskWorkspace) -> None:
        await asyncio.to_thread(self.release_sync, ws)
