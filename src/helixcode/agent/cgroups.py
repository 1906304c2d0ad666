"""A pids (and memory) cgroup per sandboxed command, for workers that run as root.

The sandbox's process limit is ``RLIMIT_NPROC``, set inside its user namespace. The kernel exempts
uid 0 of the host from that limit, so a worker running as root (CI, many containers) would let a fork
bomb loose. When this process can write a cgroup hierarchy with the ``pids`` controller (version 1 at
``/sys/fs/cgroup/pids``, or version 2 with ``pids`` enabled below this process's own group), each
command gets its own child group with ``pids.max`` (and, where the memory controller is writable too,
a memory ceiling for the whole command). The command joins the group before it execs bwrap, through
a one-line ``sh`` wrapper, so no process of it ever runs outside the group.

Nothing here is needed by an unprivileged worker: ``RLIMIT_NPROC`` is counted per user namespace
there, so it already caps the sandbox alone.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimit", "cgroup_for"]

ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class CgroupLimit:
    """Where to make per-command groups: a pids parent, and a memory parent when one is writable."""

    version: int
    pids_parent: Path
    memory_parent: Path | None
    processes: int
    memory_bytes: int | None

    @contextlib.contextmanager
    def session(self) -> Iterator[_Group]:
        _sweep()
        name = f"helix-sandbox-{os.getpid()}-{next(_counter)}"
        group = _Group(
            self, self.pids_parent / name, self.memory_parent / name if self.memory_parent else None
        )
        group.create()
        try:
            yield group
        finally:
            group.remove()


class _Group:
    def __init__(self, spec: CgroupLimit, pids: Path, memory: Path | None) -> None:
        self.spec, self.pids, self.memory = spec, pids, memory

    def create(self) -> None:
        self.pids.mkdir()
        (self.pids / "pids.max").write_text(str(self.spec.processes))
        if self.memory is not None and self.spec.memory_bytes:
            if self.memory != self.pids:
                self.memory.mkdir()
            limit = "memory.max" if self.spec.version == 2 else "memory.limit_in_bytes"
            try:
                (self.memory / limit).write_text(str(self.spec.memory_bytes))
            except OSError:
                self.memory = None if self.memory != self.pids else self.memory

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` preceded by joining the group(s): ``sh -c 'echo $$ > procs... && exec "$@"'``."""
        files = [str(self.pids / "cgroup.procs")]
        if self.memory is not None and self.memory != self.pids:
            files.append(str(self.memory / "cgroup.procs"))
        joins = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(files)))
        script = f'{joins} && shift {len(files)} && exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *files, *argv]

    def hits(self) -> list[str]:
        """Which limits refused something during the command."""
        found: list[str] = []
        events = _read(self.pids / "pids.events")
        if events and any(line.split()[-1] != "0" for line in events.splitlines() if line.startswith("max")):
            found.append(f"the process limit ({self.spec.processes})")
        if self.memory is not None:
            if self.spec.version == 2:
                mem = _read(self.memory / "memory.events") or ""
                oom = any(ln.startswith("oom_kill ") and ln.split()[1] != "0" for ln in mem.splitlines())
            else:
                oom = (_read(self.memory / "memory.failcnt") or "0").strip() != "0"
            if oom:
                found.append("the memory limit")
        return found

    def remove(self) -> None:
        """Remove the group, or leave it to the next sweep when its last processes are still being
        reaped (waiting here for them cost more than the sandbox's whole start-up)."""
        for path in {self.pids, *([self.memory] if self.memory else [])}:
            if not _rmdir(path):
                _leftover.add(path)


#: Groups whose last processes were still leaving when their command ended.
_leftover: set[Path] = set()


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _sweep() -> None:
    for path in list(_leftover):
        if _rmdir(path):
            _leftover.discard(path)


@atexit.register
def _sweep_at_exit() -> None:
    for _ in range(100):
        _sweep()
        if not _leftover:
            return
        time.sleep(0.01)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _own_groups() -> dict[str, str]:
    """This process's cgroup paths: ``{"pids": "/x", "memory": "/y", "": "/z" (v2)}``."""
    out: dict[str, str] = {}
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def cgroup_for(processes: int | None, memory_mb: int | None) -> CgroupLimit | None:
    """Where per-command groups with these limits can be made, or None (not root, no process limit,
    or no writable pids hierarchy)."""
    if not processes or os.geteuid() != 0:
        return None
    return _cached(processes, memory_mb)


@contextlib.contextmanager
def _probe_dir(parent: Path) -> Iterator[bool]:
    trial = parent / f"helix-probe-{os.getpid()}"
    try:
        trial.mkdir()
    except OSError:
        yield False
        return
    try:
        yield (trial / "pids.max").exists() or (trial / "memory.limit_in_bytes").exists()
    finally:
        with contextlib.suppress(OSError):
            trial.rmdir()


_found: dict[tuple[int, int | None], CgroupLimit | None] = {}


def _cached(processes: int, memory_mb: int | None) -> CgroupLimit | None:
    key = (processes, memory_mb)
    if key not in _found:
        _found[key] = _locate(processes, memory_mb)
    return _found[key]


def _locate(processes: int, memory_mb: int | None) -> CgroupLimit | None:
    own = _own_groups()
    memory_bytes = memory_mb * 2**20 if memory_mb else None
    if "pids" in own:  # version 1: one hierarchy per controller
        pids = ROOT / "pids" / own["pids"].lstrip("/")
        if _writable_dir(pids) and (pids / "cgroup.procs").exists():
            with _probe_dir(pids) as ok:
                if ok:
                    memory = ROOT / "memory" / own.get("memory", "/").lstrip("/")
                    mem = memory if memory_bytes and _writable_dir(memory) else None
                    return CgroupLimit(1, pids, mem, processes, memory_bytes)
    if "" in own:  # version 2: one tree, controllers enabled per level
        base = ROOT / own[""].lstrip("/")
        if not (base / "cgroup.controllers").exists():
            base = ROOT / "unified" / own[""].lstrip("/")
        enabled = (_read(base / "cgroup.subtree_control") or "").split()
        if "pids" in enabled and _writable_dir(base):
            mem = base if memory_bytes and "memory" in enabled else None
            return CgroupLimit(2, base, mem, processes, memory_bytes)
    return None
