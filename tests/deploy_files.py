"""Read the deployment files (Dockerfile, compose.yaml, the systemd unit) the way their tools do, so
the unit tests can check what they say and the acceptance tests can run the very commands they run."""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
UNIT = ROOT / "deploy" / "helix-worker.service"
ENV_EXAMPLE = ROOT / "deploy" / "helix.env.example"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY...
    args: str  # continuation lines joined, as the builder sees them


def dockerfile(text: str | None = None) -> list[Instruction]:
    """The instructions in order: comments dropped, ``\\``-continued lines joined (comment lines
    inside a continuation are dropped too, as BuildKit does)."""
    lines = (DOCKERFILE.read_text() if text is None else text).splitlines()
    out: list[Instruction] = []
    pending = ""
    for raw in lines:
        line = raw.strip()
        if not line or (line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM."""
    found: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def exec_form(ins: Instruction) -> list[str]:
    """An ENTRYPOINT or CMD in exec (JSON) form; the shell form would hide signals from the worker."""
    value = json.loads(ins.args)
    assert isinstance(value, list), f"{ins.keyword} is not in exec form: {ins.args}"
    return [str(v) for v in value]


def image_argv(extra: list[str] | None = None) -> list[str]:
    """What the image runs for ``docker run IMAGE [extra]``: its ENTRYPOINT, minus an init that only
    forwards signals (tini), plus ``extra`` or else its CMD."""
    final = stages(dockerfile())[-1]
    entrypoint = exec_form(next(i for i in reversed(final) if i.keyword == "ENTRYPOINT"))
    cmd = exec_form(next(i for i in reversed(final) if i.keyword == "CMD"))
    if Path(entrypoint[0]).name in {"tini", "tini-static", "dumb-init"}:
        entrypoint = entrypoint[entrypoint.index("--") + 1 :] if "--" in entrypoint else entrypoint[1:]
    return entrypoint + (cmd if extra is None else extra)


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service_argv(name: str) -> list[str]:
    """The command a compose service runs in the image (its ``command`` after the ENTRYPOINT)."""
    service = compose()["services"][name]
    command = service.get("command")
    return image_argv(command if isinstance(command, list) else shlex.split(command) if command else None)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` (which fails when unset)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", one, value)


def unit() -> configparser.ConfigParser:
    """The systemd unit as sections of keys (a repeated key keeps its last value, as in systemd for
    the keys tested here)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def unit_argv() -> list[str]:
    return shlex.split(unit()["Service"]["ExecStart"])


_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "ms": 0.001, "us": 1e-6}


def seconds(value: str | int | float) -> float:
    """``45s``, ``1m30s``, ``1min 30s``, ``60`` -> seconds (compose durations and systemd time spans)."""
    if isinstance(value, int | float):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    assert parts, value
    assert "".join(n + u for n, u in parts) == re.sub(r"\s+", "", value), value
    return sum(float(n) * _UNITS[u] for n, u in parts)


def env_file(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile reads them (comment lines skipped)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {raw}"
            out[key.strip()] = value.strip()
    return out


def in_build_context(path: str) -> bool:
    """Whether ``.dockerignore`` lets ``path`` (relative to the repository) into the build context:
    the last matching pattern wins, ``!`` re-includes."""
    included = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *(str(p) for p in Path(path).parents if str(p) != ".")]
        if any(_match(pattern, c) for c in candidates):
            included = negate
    return included


def _match(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        return any(fnmatch.fnmatch(part, pattern[3:]) for part in Path(path).parts)
    return fnmatch.fnmatch(path, pattern) and path.count("/") == pattern.count("/")
