"""Remote repositories: which locations are remote, and each worker's clone cache of one.

A job's repository is either a local checkout, worked on in place (worktrees inside its ``.git``), or a
remote that workers clone, fetch from and push to: any git URL (``https://``, ``ssh://``,
``git@host:path``, ``file://``) or the path of a bare repository. Each worker keeps one bare clone per
URL under its data directory (``workers.data_dir``), named by a hash of the URL::

    <data_dir>/repos/<sha256(url)[:16]>.git
        refs/remotes/origin/*     the remote's branches as last fetched (task and job branches included)
        refs/helix/<job>/base     the jobs' base commits (created once on the remote, then fetched)
        refs/heads/helix/...      this machine's task branches and its view of the job branches

Worker processes on one machine share the cache; creating it holds a file lock beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from helixcode.agent.gitcmd import GitError, run_git, scrub_urls
from helixcode.config import mask_url

__all__ = [
    "FETCH_SPECS",
    "PushRejected",
    "cache_path",
    "fetch",
    "file_lock",
    "is_bare",
    "open_cache",
    "push",
    "remote_url",
]

#: What a fetch brings: every branch as a remote-tracking ref (local branches are never overwritten),
#: and the jobs' base refs, which never change once created.
FETCH_SPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/helix/*:refs/helix/*")
#: A remote that refused an update because a concurrent push held or moved the ref (not a hook's "no").
_RACED = re.compile(r"\[remote rejected\].*(lock|failed to update ref|incorrect old value)")
_SCP = re.compile(r"^(?:[^@/:\s]+@)?[^/:\s]{2,}:(?!//)")  # git@host:path, host:path (not C:\...)


def remote_url(location: str | Path) -> str | None:
    """The URL to clone when ``location`` is remote (a URL or a bare repository); None for a checkout."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve()) if is_bare(path) else None
    return text if _SCP.match(text) else None


def is_bare(path: Path) -> bool:
    """Whether ``path`` is a bare repository, read from its files (no git call)."""
    config = path / "config"
    if not ((path / "HEAD").is_file() and (path / "objects").is_dir() and config.is_file()):
        return False
    text = config.read_text(errors="replace")
    return re.search(r"^\s*bare\s*=\s*true\s*$", text, re.M | re.I) is not None


def cache_path(data_dir: str | Path, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(data_dir).expanduser().resolve() / "repos" / f"{digest}.git"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on one machine (``flock`` on ``path``)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_cache(url: str, path: Path) -> None:
    """Make sure ``path`` is a bare clone of ``url``; a first clone that fails leaves nothing behind."""
    if (path / "HEAD").is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        if (path / "HEAD").is_file():
            return
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            run_git("init", "--bare", "-q", str(tmp), cwd=path.parent)
            run_git("remote", "add", "origin", url, cwd=tmp)
            fetch(url, tmp)
            # origin/HEAD: the remote's default branch, where a job starts unless told otherwise.
            run_git("remote", "set-head", "origin", "--auto", cwd=tmp, check=False)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class PushRejected(GitError):
    """The remote refused a ref update because the ref moved (not a fast-forward, a stale lease, a
    lock held by a concurrent push): fetch, redo the merge, and try again."""


def fetch(url: str, cache: Path) -> None:
    proc = run_git("fetch", "--quiet", "--no-tags", "origin", *FETCH_SPECS, cwd=cache, check=False)
    if proc.returncode != 0:
        raise GitError(f"cannot fetch from {mask_url(url)}: {_stderr(proc.stderr)}")


def push(url: str, cache: Path, *args: str) -> None:
    """``git push origin args``; ``PushRejected`` when the remote refused because a ref moved."""
    proc = run_git("push", "--porcelain", "origin", *args, cwd=cache, check=False)
    if proc.returncode == 0:
        return
    said = f"{proc.stdout}\n{proc.stderr}"
    if "[rejected]" in said or "stale info" in said or _RACED.search(said):
        raise PushRejected(f"push to {mask_url(url)} rejected: {_stderr(proc.stdout + proc.stderr)}")
    raise GitError(f"cannot push to {mask_url(url)}: {_stderr(proc.stderr or proc.stdout)}")


def _stderr(text: str) -> str:
    return scrub_urls(text.strip()[:1000]) or "(no message from git)"
