"""A job's git workspace: one worktree and branch per task, merged without touching the user's checkout.

Layout, for job ``J`` on repository ``R``::

    refs/helix/J/base        the commit the job started from (created once, compare-and-swap)
    helix/tasks/J/<task>     each task's branch: its work-in-progress and final commits
    helix/J                  the job's branch: every finished task merged in, in finishing order
    <R's git dir>/helix/worktrees/J/<task>   the task's worktree (inside .git, so it never shows up
                                             in the user's ``git status``)

``R`` is a local checkout, worked on in place, or a remote (a URL or a bare repository) that each
worker clones into its own cache (see ``helixcode.agent.remote``). With a remote, the remote is the
system of record: a worker fetches before preparing a task (so it sees the branches other workers
pushed), pushes the task's branch after every commit (so a resumed attempt on another machine finds the
checkpointed WIP commit), and lands a finished task on the job branch by fetch + merge + push, retried a
bounded number of times when another worker moved it first. The job branch is never force-pushed; a
task branch is pushed with a lease on the value last fetched, so only the attempt holding the task's
lease, which fetched it, can move it.

A task starts from the merge of its dependencies' branches (or, with none, from its parent's branch or
the base). Merges are computed with ``git merge-tree --write-tree`` (git >= 2.38) and recorded with
``commit-tree`` + a compare-and-swap ``update-ref``, so no checkout is needed and a conflict is reported
with the conflicting files named instead of being resolved silently (``record_conflict`` keeps such a
merge, markers and all, for a debugging task to resolve). Structural operations (worktrees, fetches,
pushes, job-branch updates) hold a repository-wide file lock, so several worker processes on one
machine can share a repository or a clone cache.

Landing on the job branch is fenced like a database write: ``integrate`` takes a ``fence``, called
under the repository lock right before the compare-and-swap ``update-ref`` (and before each push of
the job branch to a remote); it renews the attempt's lease in the database or raises. An attempt that
lost its lease (a worker stopped past the TTL, say) therefore never moves ``helix/<job>``: its
successor's landing stands, and the refusal is an event. The compare-and-swap also refuses a tip that
moved since the merge was computed, so a landing never overwrites another.

The git calls block; the async methods run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from helixcode.agent import remote
from helixcode.agent.gitcmd import GitError, run_git
from helixcode.config import mask_url

__all__ = [
    "ConflictRecord",
    "Fence",
    "GitError",
    "MergeConflict",
    "TaskWorkspace",
    "Workspace",
    "branch_name",
    "job_branch",
]

#: Tries to land a task on a remote job branch that other workers keep moving.
PUSH_RETRIES = 8
DEFAULT_DATA_DIR = ".helix"
_ZERO = "0" * 40
#: Called right before the job branch moves; raises when the attempt may no longer land.
Fence = Callable[[], None]
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


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


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """A merge kept with its conflict markers: the commit (on the task's branch), the conflicting files,
    and each side merged as ``(ref, commit, subject)``."""

    commit: str
    files: list[str]
    sides: list[tuple[str, str, str]]


class Workspace:
    """Git operations for one job on one repository (a local checkout, or a remote via a clone cache)."""

    def __init__(self, repo: str | Path, job_id: str, *, data_dir: str | Path | None = None) -> None:
        self.url = remote.remote_url(repo)
        if self.url is None:
            self.repo = Path(repo).expanduser().resolve()
        else:
            self.repo = remote.cache_path(data_dir or DEFAULT_DATA_DIR, self.url)
        self.job_id = job_id
        self.push_retries = 0  # job-branch pushes refused because another worker moved it first
        self._common: Path | None = None

    @property
    def shown(self) -> str:
        """The repository's location, safe to print (a URL's password masked)."""
        return mask_url(self.url) if self.url else str(self.repo)

    # -- plumbing -------------------------------------------------------------------------------

    def git(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if self.url is not None:
            remote.open_cache(self.url, self.repo)
        return run_git(*args, cwd=cwd or self.repo, check=check)

    @property
    def common_dir(self) -> Path:
        if self._common is None:
            proc = None
            if self.url is not None or self.repo.is_dir():  # git() clones a remote first
                proc = self.git("rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
            if proc is None or proc.returncode:
                raise GitError(f"{self.shown} is not a git repository")
            self._common = Path(proc.stdout.strip())
        return self._common

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return remote.file_lock(self.common_dir / "helix.lock")

    def rev(self, ref: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() or None

    def worktree_path(self, task_key: str) -> Path:
        return self.common_dir / "helix" / "worktrees" / _ref_part(self.job_id) / _ref_part(task_key)

    @property
    def base_ref(self) -> str:
        return f"refs/helix/{_ref_part(self.job_id)}/base"

    def _tip_ref(self, branch: str) -> str | None:
        """The ref holding ``branch``'s latest commit: the remote's (as fetched) first, else ours."""
        for ref in ([f"refs/remotes/origin/{branch}"] if self.url else []) + [f"refs/heads/{branch}"]:
            if self.rev(ref):
                return ref
        return None

    def _commit(self, ref: str) -> str:
        named = self._tip_ref(ref) if not ref.startswith("refs/") else None
        found = self.rev(named or ref)
        if found is None:
            raise GitError(f"no commit at {ref!r}")
        return found

    # -- remote ---------------------------------------------------------------------------------

    def _fetch(self) -> None:
        if self.url is not None:
            remote.fetch(self.url, self.repo)

    def _push(self, *args: str) -> None:
        assert self.url is not None
        remote.push(self.url, self.repo, *args)

    def _publish(self, branch: str) -> None:
        """Push a task branch (remote mode), leased on the value last fetched or pushed."""
        if self.url is None:
            return
        tip = self._commit(f"refs/heads/{branch}")
        seen = self.rev(f"refs/remotes/origin/{branch}") or ""
        if seen != tip:
            self._push(f"--force-with-lease=refs/heads/{branch}:{seen}", f"{tip}:refs/heads/{branch}")
            self.git("update-ref", f"refs/remotes/origin/{branch}", tip)

    # -- job level ------------------------------------------------------------------------------

    def start_commit_sync(self) -> str:
        """Where a new job starts: the checkout's HEAD, or the remote's default branch (fetched now).
        ``GitError`` naming the repository when it is not one, cannot be reached or has no commit."""
        with self._locked():
            return self._start_commit()

    def _start_commit(self) -> str:
        self._fetch()
        found = self.rev("refs/remotes/origin/HEAD" if self.url else "HEAD")
        if found is None:
            raise GitError(f"{self.shown} has no commit on its default branch: commit something first")
        return found

    def ensure_base_sync(self, start: str = "HEAD") -> str:
        """The job's base commit: created from ``start`` the first time, the same commit afterwards."""
        with self._locked():
            return self._ensure_base(start)

    def _ensure_base(self, start: str = "HEAD") -> str:
        if found := self.rev(self.base_ref):
            return found
        if self.url is not None:
            self._fetch()  # another machine may have created it
            if found := self.rev(self.base_ref):
                return found
        commit = self._start_commit() if start == "HEAD" else self.rev(start)
        if commit is None:
            raise GitError(f"{self.shown} has no commit at {start!r}: commit something first")
        # Create-only (old value all zeros): the first worker wins, the others read its choice.
        self.git("update-ref", self.base_ref, commit, _ZERO, check=False)
        found = self.rev(self.base_ref)
        assert found is not None
        job_ref = f"refs/heads/{job_branch(self.job_id)}"
        self.git("update-ref", job_ref, found, _ZERO, check=False)
        if self.url is not None:
            for ref in (self.base_ref, job_ref):  # create-only on the remote too: an empty lease
                with contextlib.suppress(remote.PushRejected):  # someone else's is first: fetch it
                    self._push(f"--force-with-lease={ref}:", f"{found}:{ref}")
            self._fetch()
            found = self.rev(self.base_ref)
            assert found is not None
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

    def _merge_two(self, ours: str, theirs: str, message: str) -> str:
        merged, files = self._merge_tree(ours, theirs, message, keep_conflicts=False)
        if files:
            raise MergeConflict(message.removeprefix("Merge ").strip(), files)
        return merged

    def _merge_tree(
        self, ours: str, theirs: str, message: str, *, keep_conflicts: bool, labels: Sequence[str] = ()
    ) -> tuple[str, list[str]]:
        """Merge two commits into a new one: (commit, conflicting files). With conflicts the commit is
        made only when ``keep_conflicts``, and its files then hold the conflict markers."""
        if self._is_ancestor(theirs, ours):
            return ours, []
        if self._is_ancestor(ours, theirs):
            return theirs, []
        names = list(labels) or [ours, theirs]  # merge-tree labels the markers with what it was given
        proc = self.git("merge-tree", "--write-tree", "--name-only", "--no-messages", *names, check=False)
        lines = proc.stdout.splitlines()
        if proc.returncode not in (0, 1) or not lines:
            raise GitError(f"git merge-tree failed: {proc.stderr.strip()[:1000]}")
        files = [ln for ln in lines[1:] if ln.strip()] if proc.returncode == 1 else []
        if proc.returncode == 1 and not keep_conflicts:
            return ours, files or ["(unknown files)"]
        tree = lines[0].strip()
        commit = self.git("commit-tree", tree, "-p", ours, "-p", theirs, "-m", message).stdout.strip()
        return commit, files

    def _is_ancestor(self, a: str, b: str) -> bool:
        return self.git("merge-base", "--is-ancestor", a, b, check=False).returncode == 0

    def integrate_sync(self, task_key: str, fence: Fence | None = None) -> str:
        """Merge a task's branch into the job's branch (compare-and-swap under the lock); the new tip.

        With a remote: push the task's branch, then fetch + merge + push the job branch (never forced),
        again after a fresh fetch whenever another worker moved it first, at most ``PUSH_RETRIES`` times.
        ``fence`` runs right before the job branch moves (see the module's docstring); what it raises
        propagates and nothing moves.
        """
        branch = branch_name(self.job_id, task_key)
        target = job_branch(self.job_id)
        message = f"Merge {branch} into {target}"
        with self._locked():
            if self.url is None:
                tip = self.rev(f"refs/heads/{target}") or self._ensure_base()
                merged = self._merge_two(tip, self._commit(f"refs/heads/{branch}"), message)
                if fence is not None:  # even with nothing new to merge: the attempt claims its landing
                    fence()
                if merged != tip:
                    self.git("update-ref", f"refs/heads/{target}", merged, tip)
                return merged
            self._publish(branch)
            theirs = self._commit(f"refs/heads/{branch}")
            for attempt in range(PUSH_RETRIES):
                self._fetch()
                tip = self.rev(f"refs/remotes/origin/{target}") or self._ensure_base()
                merged = self._merge_two(tip, theirs, message)
                if fence is not None:
                    fence()
                if merged != tip:
                    try:
                        self._push_job(merged, target)
                    except remote.PushRejected:
                        self.push_retries += 1
                        time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
                        continue
                self.git("update-ref", f"refs/heads/{target}", merged)
                return merged
        raise GitError(
            f"could not land {branch} on {target} at {self.shown}: other workers moved it "
            f"{PUSH_RETRIES} times in a row; the task's branch is pushed, try again"
        )

    def _push_job(self, commit: str, target: str) -> None:
        """Push the job branch: a fast-forward or nothing (never forced)."""
        self._push(f"{commit}:refs/heads/{target}")
        self.git("update-ref", f"refs/remotes/origin/{target}", commit)

    async def integrate(self, task_key: str, fence: Fence | None = None) -> str:
        return await asyncio.to_thread(self.integrate_sync, task_key, fence)

    def record_conflict_sync(self, task_key: str, refs: Sequence[str]) -> ConflictRecord:
        """Merge ``refs`` (branch names) with conflicts kept as markers, and put that merge commit on the
        task's branch (pushed, with a remote), so a debugging task can start from it and resolve it.

        The first ref must be the task's own branch when it exists, so nothing on it is lost: the new
        commit has every ref's commit as an ancestor.
        """
        branch = branch_name(self.job_id, task_key)
        with self._locked():
            self._fetch()
            sides: list[tuple[str, str, str]] = []
            files: list[str] = []
            head = ""
            for ref in refs:
                named = self._tip_ref(ref) or ref
                commit = self._commit(ref)
                subject = self.git("log", "-1", "--format=%s", commit).stdout.strip()
                sides.append((ref, commit, subject))
                if not head:
                    head, label = commit, named
                    continue
                head, found = self._merge_tree(
                    head,
                    commit,
                    f"Merge {ref} (conflicts kept for resolution)",
                    keep_conflicts=True,
                    labels=[label, named],
                )
                label = head
                files += [f for f in found if f not in files]
            old = self.rev(f"refs/heads/{branch}")
            if old is not None and not self._is_ancestor(old, head):
                raise GitError(f"{branch} would lose commits: record conflicts starting from it")
            self.git("update-ref", f"refs/heads/{branch}", head, old or _ZERO)
            self._publish(branch)
        return ConflictRecord(head, files, sides)

    async def record_conflict(self, task_key: str, refs: Sequence[str]) -> ConflictRecord:
        return await asyncio.to_thread(self.record_conflict_sync, task_key, refs)

    # -- task level -----------------------------------------------------------------------------

    def prepare_sync(
        self, task_key: str, sources: Sequence[str], resume_commit: str | None = None
    ) -> TaskWorkspace:
        """A clean worktree on the task's branch.

        A new branch starts from the merge of ``sources`` (branch names; the base when empty). An
        existing branch (a resumed attempt, here or, with a remote, on another machine) is kept, and
        reset to ``resume_commit`` when given, so the files match the checkpointed conversation.
        """
        branch = branch_name(self.job_id, task_key)
        path = self.worktree_path(task_key)
        with self._locked():
            self._fetch()
            base = self._ensure_base()
            self._drop_worktree(path)
            found = self._tip_ref(branch)
            existing = self.rev(found) if found else None
            if existing is None:
                start = self.merged_commit_sync(sources, f"dependencies of {task_key}") if sources else base
                self.git("branch", branch, start)
                self._publish(branch)
            else:
                start = existing
                if found != f"refs/heads/{branch}":  # the remote's is the latest: work from it
                    self.git("update-ref", f"refs/heads/{branch}", existing)
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
        """Commit everything in the worktree (and push it, with a remote); the new commit, or None when
        nothing changed."""
        self.git("add", "-A", cwd=ws.path)
        staged = self.git("diff", "--cached", "--quiet", cwd=ws.path, check=False).returncode != 0
        if not staged and not allow_empty:
            return None
        args = ["commit", "-q", "--no-verify", "-m", message] + (["--allow-empty"] if allow_empty else [])
        self.git(*args, cwd=ws.path)
        if self.url is not None:
            with self._locked():
                self._publish(ws.branch)
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
