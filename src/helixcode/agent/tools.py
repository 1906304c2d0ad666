"""The agent's tools, confined to one worktree.

Every path is resolved (symlinks followed) and must stay inside the worktree and outside ``.git``;
anything else is refused with a message the model can read. Commands (and ``search``'s ripgrep) run
through the worker's ``Sandbox`` (``helixcode.agent.sandbox``): that, not this module, is the security
boundary. The allow/deny list on program names (``agent.commands``) is a convenience that keeps a
model from wasting rounds on tools it should not use; it is easy to get around (``sh -c``, ``env``,
an interpreter) and is not meant to stop anything determined.

A tool never raises into the loop: faults come back as ``ToolResult(ok=False, ...)``, because a
model's mistake is part of the conversation, not a crash. External tools (the MCP client's
``McpToolset``) plug in through ``ToolProvider``: anything with ``specs()`` and ``call(name, args)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shlex
import shutil
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from helixcode.agent.sandbox import CommandResult, Sandbox, scrub_env
from helixcode.config import DEFAULT_DENY
from helixcode.llm.types import Tool

__all__ = [
    "CommandPolicy",
    "ToolProvider",
    "ToolResult",
    "Toolset",
    "WorkspaceTools",
    "command_result",
    "scrub_env",
]

OUTPUT_LIMIT = 4000
READ_LIMIT = 8000
LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ToolResult:
    ok: bool
    content: str
    data: dict[str, Any] = field(default_factory=dict)


class ToolProvider(Protocol):
    """Tools from elsewhere (an MCP server, say): their specs, and how to call them."""

    def specs(self) -> Sequence[Tool]: ...

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult: ...


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """Which programs ``run_command`` may start: the first word of each command in a pipeline/list."""

    allow: tuple[str, ...] = ()  # empty: everything not denied
    deny: tuple[str, ...] = DEFAULT_DENY
    timeout: float = 60.0
    output_limit: int = OUTPUT_LIMIT

    def refuses(self, command: str) -> str | None:
        try:
            words = shlex.split(command, posix=True)
        except ValueError as exc:
            return f"cannot parse the command: {exc}"
        programs: list[str] = []
        expect = True
        for word in words:
            if expect and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
                programs.append(os.path.basename(word))
                expect = False
            if word in ("|", "||", "&&", ";", "&") or word.endswith(";"):
                expect = True
        for program in programs:
            if program in self.deny:
                return f"'{program}' is not allowed here"
            if self.allow and program not in self.allow:
                return f"'{program}' is not in the allowed list ({', '.join(self.allow)})"
        return None


def _schema(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


_STR = {"type": "string"}
_INT = {"type": "integer"}

SPECS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("list_files", "List files under a directory of the repository.", _schema({"path": _STR})),
        Tool(
            "read_file",
            "Read a text file, optionally only lines start..end (1-based, inclusive).",
            _schema({"path": _STR, "start": _INT, "end": _INT}, ["path"]),
        ),
        Tool(
            "write_file",
            "Create or overwrite a file with the given content.",
            _schema({"path": _STR, "content": _STR}, ["path", "content"]),
        ),
        Tool(
            "edit_file",
            "Replace the exact text `search` (must occur once) by `replace` in a file.",
            _schema({"path": _STR, "search": _STR, "replace": _STR}, ["path", "search", "replace"]),
        ),
        Tool(
            "search",
            "Search the repository for a regular expression; returns matching lines.",
            _schema({"pattern": _STR, "path": _STR}, ["pattern"]),
        ),
        Tool(
            "run_command",
            "Run a shell command in the repository root (with a timeout).",
            _schema({"command": _STR}, ["command"]),
        ),
        Tool(
            "report_progress",
            "Say how far along the task is (0 to 1) and what is happening.",
            _schema({"fraction": {"type": "number"}, "note": _STR}, ["fraction"]),
        ),
        Tool(
            "finish",
            "Finish the task with a short summary of what was done.",
            _schema({"summary": _STR}, ["summary"]),
        ),
    )
}


class Toolset:
    """The tools offered to one task: the workspace tools chosen by name, plus external providers."""

    def __init__(
        self, workspace: WorkspaceTools, names: Sequence[str], extra: Sequence[ToolProvider] = ()
    ) -> None:
        self.workspace = workspace
        self.names = [n for n in names if n in SPECS]
        if "finish" not in self.names:
            self.names.append("finish")
        self.extra = list(extra)
        self._routes: dict[str, ToolProvider] = {t.name: p for p in self.extra for t in p.specs()}

    def specs(self) -> list[Tool]:
        own = [SPECS[n] for n in self.names]
        return own + [t for p in self.extra for t in p.specs() if t.name not in SPECS]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        if name in self.names:
            return await self.workspace.call(name, arguments)
        if provider := self._routes.get(name):
            try:
                return await provider.call(name, arguments)
            except Exception as exc:  # an external tool's failure is the model's to read
                return ToolResult(False, f"{name} failed: {type(exc).__name__}: {exc}")
        return ToolResult(
            False, f"unknown tool '{name}'; available: {', '.join(t.name for t in self.specs())}"
        )


class WorkspaceTools:
    """The built-in tools over one root directory (a task's worktree).

    ``git_dir``: the repository's git metadata, shown read-only to commands; ``network``: whether
    commands may use the network (None: the sandbox's default).
    """

    def __init__(
        self,
        root: Path,
        policy: CommandPolicy | None = None,
        *,
        sandbox: Sandbox | None = None,
        git_dir: Path | None = None,
        network: bool | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.policy = policy or CommandPolicy()
        self.sandbox = sandbox or Sandbox()
        self.git_dir = git_dir
        self.network = network
        #: What the tools refused this attempt, by kind (``command``, ``path``): recorded as one
        #: ``sandbox_refused`` event when the attempt ends, for the fleet's metrics and the log.
        self.refusals: collections.Counter[str] = collections.Counter()
        self.handlers: dict[str, Callable[[Mapping[str, Any]], Awaitable[ToolResult]]] = {
            "list_files": self.list_files,
            "read_file": self.read_file,
            "write_file": self.write_file,
            "edit_file": self.edit_file,
            "search": self.search,
            "run_command": self.run_command,
            "report_progress": self.report_progress,
            "finish": self.finish,
        }

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        handler = self.handlers.get(name)
        if handler is None:
            return ToolResult(False, f"unknown tool '{name}'")
        try:
            return await handler(arguments)
        except PathRefused as exc:
            self.refusals["path"] += 1
            return ToolResult(False, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return ToolResult(False, f"{name}: bad arguments ({type(exc).__name__}: {exc})")
        except OSError as exc:
            return ToolResult(False, f"{name}: {exc.strerror or exc}")

    # -- paths ----------------------------------------------------------------------------------

    def resolve(self, raw: Any, *, must_exist: bool = False) -> Path:
        """A path inside the root, symlinks followed; ``PathRefused`` for anything that leaves it."""
        text = str(raw or ".").strip()
        if "\x00" in text:
            raise PathRefused("refused: NUL in path")
        candidate = Path(text)
        if candidate.is_absolute():
            raise PathRefused(f"refused: '{text}' is absolute; give a path relative to the repository")
        resolved = (self.root / candidate).resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise PathRefused(f"refused: '{text}' leaves the repository")
        rel = resolved.relative_to(self.root)
        if rel.parts[:1] == (".git",):
            raise PathRefused("refused: .git is not part of the task's files")
        if must_exist and not resolved.exists():
            raise PathRefused(f"no such file: '{text}'")
        return resolved

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root)) or "."

    # -- the tools ------------------------------------------------------------------------------

    async def list_files(self, args: Mapping[str, Any]) -> ToolResult:
        base = self.resolve(args.get("path"), must_exist=True)
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                found.append(self.rel(Path(dirpath) / name))
                if len(found) >= LIST_LIMIT:
                    break
            if len(found) >= LIST_LIMIT:
                break
        more = f"\n(first {LIST_LIMIT} shown)" if len(found) >= LIST_LIMIT else ""
        return ToolResult(True, ("\n".join(found) or "(no files)") + more, {"files": found})

    async def read_file(self, args: Mapping[str, Any]) -> ToolResult:
        path = self.resolve(args["path"], must_exist=True)
        if not path.is_file():
            return ToolResult(False, f"not a file: '{self.rel(path)}'")
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        start = max(1, int(args.get("start") or 1))
        end = min(len(lines), int(args.get("end") or len(lines)))
        text = "\n".join(lines[start - 1 : end])
        if len(text) > READ_LIMIT:
            text = text[:READ_LIMIT] + f"\n... (truncated; read a smaller range, file has {len(lines)} lines)"
        return ToolResult(True, text, {"lines": len(lines)})

    async def write_file(self, args: Mapping[str, Any]) -> ToolResult:
        path = self.resolve(args["path"])
        if path == self.root or path.is_dir():
            return ToolResult(False, f"'{args['path']}' is a directory")
        content = str(args["content"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return ToolResult(
            True, f"wrote {self.rel(path)} ({len(content)} characters)", {"path": self.rel(path)}
        )

    async def edit_file(self, args: Mapping[str, Any]) -> ToolResult:
        path = self.resolve(args["path"], must_exist=True)
        search, replace = str(args["search"]), str(args["replace"])
        text = path.read_text(encoding="utf-8")
        count = text.count(search) if search else 0
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times; include more context"
            return ToolResult(False, f"edit_file: the search text was {where} in {self.rel(path)}")
        path.write_text(text.replace(search, replace, 1), encoding="utf-8")
        return ToolResult(True, f"edited {self.rel(path)}", {"path": self.rel(path)})

    async def search(self, args: Mapping[str, Any]) -> ToolResult:
        pattern = str(args["pattern"])
        base = self.resolve(args.get("path"), must_exist=True)
        if rg := shutil.which("rg"):
            found = await self.sandbox.run(
                [rg, "--line-number", "--no-heading", "--color=never", "-e", pattern, str(base)],
                worktree=self.root,
                timeout=self.policy.timeout,
                output_limit=self.policy.output_limit * 4,
                network=False,
            )
            lines = [
                ln.replace(str(self.root) + os.sep, "", 1)
                for ln in found.output.splitlines()
                if not ln.startswith("refused: ")
            ]
        else:
            lines = await asyncio.to_thread(self._py_search, re.compile(pattern), base)
        text = "\n".join(lines[:LIST_LIMIT])[: self.policy.output_limit]
        return ToolResult(True, text or "(no matches)", {"matches": len(lines)})

    def _py_search(self, regex: re.Pattern[str], base: Path) -> list[str]:
        hits: list[str] = []
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in files:
            if ".git" in path.relative_to(self.root).parts or not path.is_file():
                continue
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if regex.search(line):
                        hits.append(f"{self.rel(path)}:{number}:{line}")
                        if len(hits) >= LIST_LIMIT:
                            return hits
        return hits

    async def run_command(self, args: Mapping[str, Any]) -> ToolResult:
        command = str(args["command"])
        if reason := self.policy.refuses(command):
            self.refusals["command"] += 1
            return ToolResult(False, f"refused: {reason}")
        result = await self.sandbox.run(
            command,
            worktree=self.root,
            git_dir=self.git_dir,
            timeout=self.policy.timeout,
            output_limit=self.policy.output_limit,
            network=self.network,
        )
        return command_result(result)

    async def report_progress(self, args: Mapping[str, Any]) -> ToolResult:
        fraction = min(1.0, max(0.0, float(args["fraction"])))
        return ToolResult(True, "noted", {"fraction": fraction, "note": str(args.get("note") or "")})

    async def finish(self, args: Mapping[str, Any]) -> ToolResult:
        return ToolResult(True, "finished", {"summary": str(args.get("summary") or "")})


class PathRefused(ValueError):
    """A path the tools will not touch."""


def command_result(result: CommandResult) -> ToolResult:
    """A command's outcome as the model reads it: the exit code or what stopped it, then the output."""
    return ToolResult(
        result.ok,
        f"{result.head()}\n{result.output}",
        {"exit_code": result.exit_code, "timed_out": result.timed_out, "sandboxed": result.confined},
    )
