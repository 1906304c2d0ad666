"""Running git: one place that sanitises the environment, bounds the time, hides credentials, and keeps
the repository from choosing what git executes.

Credentials come from git's own configuration and credential helpers, never from HelixCode; a URL with
a password in it may still reach us (``--repo https://user:token@host/r.git``), so every message that
leaves this module has such URLs masked with the same helper ``helix config show`` uses.

Why the hardening: the worker's git commands run inside the worker, with its credentials, on
repositories it does not control. The repository's own configuration may come from anyone (whoever
prepared the checkout, or a model that ran ``git config`` in its worktree); a model writes
``.gitattributes`` in its worktree, which points files at filter, diff and merge drivers; and hooks
(``.git/hooks`` or ``core.hooksPath``) would otherwise run on every commit, checkout and ref update. So
every command gets:

* ``-c core.hooksPath=/dev/null``, last on the command line: git looks for ``/dev/null/<hook>``, which
  cannot exist, so no hook runs, whatever any configuration says;
* for each key of the repository's own config files (``<common dir>/config``, ``config.worktree``, and
  every file they include, whatever the include's condition) that names a program (``_PLAIN``,
  ``_PER_DRIVER``, filters, credential helpers...), a ``-c key=value`` that runs nothing, followed by
  the value the trusted scopes (system, global, the ``GIT_CONFIG_*`` environment) give that key, if
  any: the user's credential helpers and git-lfs filters keep working, the repository's are gone.

The repository's files are parsed by ``git config --file - --no-includes --list`` (which runs
nothing) and cached by their contents, so an unchanged repository costs a few small reads per command,
and a change, however quick, is seen by the next one. Where the repository is (``rev-parse``, which
runs nothing either) is cached per cwd while its ``.git`` stays the same.

Limits: git passes the options on to the git processes it starts in the same repository, not to the
other side of a local transport (pushing to a bare repository on disk runs that repository's receive
hooks, as a server would). With the repository's merge or diff driver emptied, git fails on the files
that use it rather than merge them itself (``merge-tree`` exits 128). A repository that sets
``core.gitProxy`` loses the user's too (git reads the first one it finds; see ``_plan``).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from helixcode import tracing
from helixcode.config import mask_url
from helixcode.errors import HelixError

__all__ = ["GitError", "run_git", "scrub_urls"]

GIT_TIMEOUT = 120.0
IDENTITY = ("-c", "user.name=HelixCode", "-c", "user.email=helix@localhost", "-c", "commit.gpgsign=false")
#: Last on every command line, so nothing overrides it: git finds no hook under ``/dev/null``.
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
#: Git variables a worker's environment may pass on: transport and credentials (ssh, TLS, proxies,
#: askpass, the user's config files). Others (``GIT_DIR``, ``GIT_INDEX_FILE``...) would redirect our
#: commands to another repository and are dropped.
_PASSED = ("GIT_SSH", "GIT_SSL_", "GIT_HTTP_", "GIT_CURL_", "GIT_ASKPASS", "GIT_PROXY_", "GIT_CONFIG_")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")

#: Keys without a subsection that name a program, and the value that runs none (``:`` is the editor
#: git never starts; gpg's default program is the one on PATH, not the repository's).
_PLAIN = {
    "core.fsmonitor": "false",
    "core.sshcommand": "",  # GIT_SSH_COMMAND, always set, wins anyway
    "core.askpass": "",
    "core.editor": ":",
    "core.pager": "",
    "core.alternaterefscommand": "",
    "sequence.editor": ":",
    "diff.external": "",
    "interactive.difffilter": "",
    "gpg.program": "gpg",
    "uploadpack.packobjectshook": "",
}
#: (section, key) of per-driver keys (``diff.<driver>.textconv``...) that name a program. An empty
#: diff or merge driver makes git fail on the files that use it rather than run anything.
_PER_DRIVER = {
    ("diff", "textconv"): "",
    ("diff", "command"): "",
    ("merge", "driver"): "",
    ("remote", "uploadpack"): "git-upload-pack",
    ("remote", "receivepack"): "git-receive-pack",
    ("gpg", "defaultkeycommand"): "",
}
_GPG_PROGRAMS = {"openpgp": "gpg", "x509": "gpgsm", "ssh": "ssh-keygen"}
#: Git follows at most this many nested includes.
_INCLUDE_DEPTH = 10
_CACHE_LIMIT = 512


class GitError(HelixError):
    """A git command failed; the message carries its stderr (with credentials masked)."""


def scrub_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked (``https://u:***@host/r.git``)."""
    return _URL.sub(lambda m: mask_url(m.group()), text)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith(_PASSED)}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody will type
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def run_git(
    *args: str, cwd: Path, check: bool = True, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd``; ``GitError`` on failure (when ``check``) or timeout.

    The repository at ``cwd`` cannot make the command run a hook or a program its config names. Traced,
    each command is a span (``git worktree``...), a child of the attempt's.
    """
    with tracing.git_span(args, scrub_urls) as span:
        try:
            proc = _run(args, cwd, check, timeout)
        except GitError as exc:
            tracing.failed(span, "GitError", str(exc))
            raise
        span.set_attribute("process.exit.code", proc.returncode)
    return proc


def _run(args: Sequence[str], cwd: Path, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
    env = _environment()
    hardening = _HARDENER.hardening(cwd, env, timeout)
    try:
        proc = subprocess.run(
            ["git", *IDENTITY, *hardening.args, *NO_HOOKS, *args],
            cwd=cwd,
            env={**env, **hardening.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitError(scrub_urls(f"git {' '.join(args)} timed out after {timeout:g}s")) from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if check and proc.returncode != 0:
        raise GitError(
            scrub_urls(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[:1000]}")
        )
    return proc


# -- what to override: pure functions over config names ------------------------------------------

_Entry = tuple[str, str | None]  # a config name (section and key lowercase) and its value (None: no "=")


@dataclass(frozen=True, slots=True)
class _Hardening:
    """What a command needs so the repository's config runs nothing: options and environment."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def _split(name: str) -> tuple[str, str | None, str]:
    """``filter.My.Driver.clean`` -> ``("filter", "My.Driver", "clean")``; no subsection -> None."""
    section, _, rest = name.partition(".")
    subsection, dot, key = rest.rpartition(".")
    return section, (subsection if dot else None), key


def _is_helper(name: str) -> bool:
    section, _, key = _split(name)
    return section == "credential" and key == "helper"


def _neutral_entries(names: Iterable[str]) -> list[_Entry]:
    """The entries that, given after the repository's config, make its keys ``names`` run nothing."""
    out: dict[str, str] = {}
    for name in names:
        section, sub, key = _split(name)
        if name in _PLAIN:
            out[name] = _PLAIN[name]
        elif section == "filter" and sub is not None:
            if key in ("clean", "smudge", "process"):  # only those given: "process" hides "clean"
                out[name] = ""
            out[f"filter.{sub}.required"] = "false"  # a filter that is not run must not be required
        elif section == "credential" and key == "helper":
            out["credential.helper"] = ""  # an empty helper empties the whole list
        elif section == "gpg" and sub is not None and key == "program":
            out[name] = _GPG_PROGRAMS.get(sub, "")
        elif sub is not None and (section, key) in _PER_DRIVER:
            out[name] = _PER_DRIVER[section, key]
        elif section == "pager" and sub is None:
            out[name] = "false"
        elif section == "protocol" and key == "allow":
            out["protocol.ext.allow"] = "never"  # ext:: is the transport that runs a command
    return list(out.items())


def _risky(name: str) -> bool:
    return name == "core.gitproxy" or bool(_neutral_entries([name]))


def _plan(repo_names: Iterable[str], trusted: Sequence[_Entry], env: Mapping[str, str]) -> _Hardening:
    """The options for a repository whose own config files hold ``repo_names``, given the ``trusted``
    entries (system, global and environment scopes, in git's order) and the command's environment.

    Each overridden key gets its trusted values back after the neutral one, so the last value git reads
    is the user's; an emptied credential helper list gets every trusted helper back, in order.
    """
    names = list(repo_names)
    neutral = _neutral_entries(names)
    overridden = {name for name, _ in neutral}
    reset = "credential.helper" in overridden
    restored = [(n, v) for n, v in trusted if n in overridden or (reset and _is_helper(n))]
    args: list[str] = []
    extra: dict[str, str] = {}
    for name, value in neutral + restored:
        if "=" not in name:  # "-c a.b=c" splits at the first "=", and a subsection may hold one
            args += ["-c", name if value is None else f"{name}={value}"]
        else:
            var = f"HELIX_GIT_CONFIG_{len(extra)}"
            extra[var] = "true" if value is None else value
            args.append(f"--config-env={name}={var}")
    if "core.gitproxy" in names and "GIT_PROXY_COMMAND" not in env:
        # The first core.gitProxy git reads wins, so no later "-c" undoes the repository's; this
        # variable, read before any config, does (at the price of the user's own core.gitProxy).
        extra["GIT_PROXY_COMMAND"] = ""
    return _Hardening(tuple(args), extra)


def _parse_list(out: str, *, scoped: bool = False) -> list[tuple[str, _Entry]]:
    """``git config --list -z [--show-scope]`` output as ``(scope, (name, value))`` (scope "" unless
    ``scoped``)."""
    fields = out.split("\0")
    if fields and not fields[-1]:
        fields.pop()
    step = 2 if scoped else 1
    found: list[tuple[str, _Entry]] = []
    for i in range(0, len(fields) - step + 1, step):
        name, newline, value = fields[i + step - 1].partition("\n")
        found.append((fields[i] if scoped else "", (name, value if newline else None)))
    return found


def _include_paths(entries: Iterable[_Entry], config: Path) -> list[Path]:
    """The files ``config``'s include and includeIf entries name, every condition taken as true,
    resolved as git does (``~`` from HOME, relative paths from ``config``'s directory). Paths under
    git's ``%(prefix)`` are its installation's files, not the repository's, and are left out."""
    found: list[Path] = []
    for name, value in entries:
        section, _, key = _split(name)
        if section not in ("include", "includeif") or key != "path" or not value:
            continue
        if not value.startswith("%(prefix)/"):
            path = Path(os.path.expanduser(value))
            found.append(path if path.is_absolute() else config.parent / path)
    return found


# -- reading and caching: the I/O -----------------------------------------------------------------

#: What a file holds, to tell whether it changed: its bytes (a regular file), "dir", a device's
#: (mode, rdev), or None (missing).
_Content = bytes | str | tuple[int, int] | None
_K = TypeVar("_K")
_V = TypeVar("_V")


def _content(path: str | Path) -> _Content:
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as handle:
                return handle.read()
    except OSError:
        return None
    return "dir" if stat.S_ISDIR(st.st_mode) else (st.st_mode, st.st_rdev)


@dataclass(frozen=True, slots=True)
class _RepoFiles:
    """A repository's own config files as last read (path and content), and the risky keys in them."""

    contents: tuple[tuple[Path, _Content], ...]
    names: frozenset[str]

    def current(self) -> bool:
        """Whether every file still holds what was read (a device or pipe may not: read it again)."""
        return all(not isinstance(seen, tuple) and _content(path) == seen for path, seen in self.contents)


class _Hardener:
    """Per process: each cwd's git directories, each repository's risky keys, and their plans.

    Every cache is keyed by the contents of the files it was computed from (a few small reads per
    command), so a change is seen by the next command, however quickly it follows.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, tuple[object, tuple[Path, Path]]] = {}
        self._files: dict[tuple[Path, Path], _RepoFiles] = {}
        self._plans: dict[tuple[object, ...], _Hardening] = {}
        self._lock = threading.Lock()

    def hardening(self, cwd: Path, env: Mapping[str, str], timeout: float) -> _Hardening:
        dirs = self._git_dirs(cwd, env, timeout)
        if dirs is None:
            return _Hardening()
        files = self._repo_files(dirs, cwd, env, timeout)
        if not files.names:
            return _Hardening()
        key = (files.names, dirs, _trusted_signature(env))
        found = self._plans.get(key)
        if found is None:
            found = _plan(sorted(files.names), _trusted_entries(cwd, env, timeout), env)
            self._remember(self._plans, key, found)
        return found

    def _remember(self, cache: dict[_K, _V], key: _K, value: _V) -> None:
        with self._lock:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = value

    def _git_dirs(self, cwd: Path, env: Mapping[str, str], timeout: float) -> tuple[Path, Path] | None:
        """(common dir, git dir) of the repository at ``cwd``, None outside one. Cached while what
        points git there is unchanged: ``cwd/.git`` (a worktree's ``gitdir:`` file, or a directory) or,
        in a bare repository, ``cwd`` itself; with a directory, its ``commondir`` file too."""
        where = os.path.abspath(cwd)
        dot_git = os.path.join(where, ".git")
        pointer = _content(dot_git)
        base = where if pointer is None else dot_git
        try:
            inode = os.stat(base).st_ino
        except OSError:
            return None  # no such directory: the command itself will say
        key = (pointer, inode, _content(os.path.join(base, "commondir")))
        cached = self._dirs.get(where)
        if cached is not None and cached[0] == key:
            return cached[1]
        argv = ["git", *NO_HOOKS, "rev-parse", "--path-format=absolute", "--git-common-dir", "--git-dir"]
        try:
            lines = _output(argv, cwd, env, timeout, "").splitlines()
        except GitError:
            return None  # not a repository (yet), or no git: the command itself will say
        if len(lines) != 2:
            return None
        dirs = (Path(lines[0]), Path(lines[1]))
        if pointer is not None or dirs[1] == Path(os.path.realpath(where)):  # not from a parent dir
            self._remember(self._dirs, where, (key, dirs))
        return dirs

    def _repo_files(
        self, dirs: tuple[Path, Path], cwd: Path, env: Mapping[str, str], timeout: float
    ) -> _RepoFiles:
        cached = self._files.get(dirs)
        if cached is not None and cached.current():
            return cached
        common, git_dir = dirs
        contents: dict[Path, _Content] = {}
        names: set[str] = set()
        todo = [(common / "config", 0), (git_dir / "config.worktree", 0)]
        while todo:
            path, depth = todo.pop()
            if path in contents or depth > _INCLUDE_DEPTH:
                continue
            contents[path] = found = _content(path)
            if found is None or found == "dir":  # git fails on a directory: nothing to undo
                continue
            entries = [entry for _, entry in _parse_list(_read_config(path, found, cwd, env, timeout))]
            names.update(name for name, _ in entries if _risky(name))
            todo += [(p, depth + 1) for p in _include_paths(entries, path)]
        files = _RepoFiles(tuple(contents.items()), frozenset(names))
        self._remember(self._files, dirs, files)
        return files


def _read_config(path: Path, content: _Content, cwd: Path, env: Mapping[str, str], timeout: float) -> str:
    """The entries of one config file, as git parses ``content`` (its includes not followed)."""
    source, given = (str(path), None) if not isinstance(content, bytes) else ("-", content)
    argv = ["git", *NO_HOOKS, "config", "--file", source, "--no-includes", "--list", "-z"]
    return _output(argv, cwd, env, timeout, f"cannot read the git config {path}", given)


def _trusted_entries(cwd: Path, env: Mapping[str, str], timeout: float) -> list[_Entry]:
    """The system, global and ``GIT_CONFIG_*`` environment entries, as git reads them in ``cwd``."""
    argv = ["git", *NO_HOOKS, "config", "--list", "-z", "--show-scope"]
    out = _output(argv, cwd, env, timeout, "cannot read the user's git config")
    trusted = ("system", "global", "command")
    return [entry for scope, entry in _parse_list(out, scoped=True) if scope in trusted]


def _output(
    argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float, what: str, given: bytes | None = None
) -> str:
    """The output of a git command that runs no program; ``GitError`` saying ``what`` if it fails.
    Bytes that are not UTF-8 survive the round trip to a later command line (``os.fsdecode``)."""
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=dict(env),
            input=given,
            stdin=None if given is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(scrub_urls(f"{what}: {exc}")) from exc
    if proc.returncode != 0:
        raise GitError(scrub_urls(f"{what}: {os.fsdecode(proc.stderr).strip()[:1000]}"))
    return os.fsdecode(proc.stdout)


def _trusted_signature(env: Mapping[str, str]) -> tuple[object, ...]:
    """Changes when the trusted scopes may have: the variables that locate or hold them, and the files."""
    home = env.get("HOME", "")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = [env.get("GIT_CONFIG_SYSTEM", "/etc/gitconfig")]
    if "GIT_CONFIG_GLOBAL" in env:
        files.append(env["GIT_CONFIG_GLOBAL"])
    else:
        files += [os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig")]
    variables = tuple(sorted((k, v) for k, v in env.items() if k.startswith("GIT_CONFIG")))
    return (home, xdg, variables, tuple(_content(f) for f in files if f))


_HARDENER = _Hardener()
