"""What this machine can do, as capability strings that tasks' ``requires`` are matched against.

Names (documented in the README):
- ``cpu:N``, ``mem:NG`` (whole GiB), informational;
- toolchains on PATH: ``python``, ``node``, ``go``, ``cargo``, ``java``, ``gcc``, ``make``, ``docker``,
  ``git``, ``rg``;
- ``gpu``, ``gpu:nvidia``, ``gpu:<model>`` when ``nvidia-smi`` lists GPUs;
- ``llm`` and ``model:<name>`` for models a configured provider serves (added by the caller);
- any label from config (``workers.capabilities``) or ``--capability``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import psutil

from helixcode.agent.sandbox import Probe
from helixcode.config import Settings

__all__ = [
    "TOOLCHAINS",
    "GpuInfo",
    "detect_capabilities",
    "gpu_info",
    "llm_capabilities",
    "sandbox_probe",
]

TOOLCHAINS = ("python", "node", "go", "cargo", "java", "gcc", "make", "docker", "git", "rg")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    memory_mib: int
    utilization: float | None = None
    memory_used_mib: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def gpu_info(timeout: float = 5.0) -> list[GpuInfo]:
    """GPUs from ``nvidia-smi``; empty when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "name,memory.total,utilization.gpu,memory.used"
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2:
            continue
        gpus.append(
            GpuInfo(
                name=parts[0],
                memory_mib=_int(parts[1]) or 0,
                utilization=_float(parts[2]) if len(parts) > 2 else None,
                memory_used_mib=_int(parts[3]) if len(parts) > 3 else None,
            )
        )
    return gpus


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def detect_capabilities(gpus: list[GpuInfo] | None = None) -> list[str]:
    caps = [f"cpu:{os.cpu_count() or 1}", f"mem:{psutil.virtual_memory().total // 2**30}G"]
    caps += [tool for tool in TOOLCHAINS if shutil.which(tool)]
    if "python" not in caps and shutil.which("python3"):
        caps.append("python")
    gpus = gpu_info() if gpus is None else gpus
    if gpus:
        caps += ["gpu", "gpu:nvidia"]
        caps += sorted({"gpu:" + g.name.lower().replace(" ", "-") for g in gpus})
    return sorted(set(caps))


def llm_capabilities(settings: Settings) -> list[str]:
    """``llm`` plus ``model:<name>`` for what the configured providers serve, from config alone (no
    network call at start-up); with no provider configured, the embedded model when it is installed.

    The name is the one the manager knows the model by, so a task that requires ``model:<name>`` is
    served by that model on the worker that claims it.
    """
    enabled = [p for p in settings.providers.values() if p.enabled]
    if enabled:
        return sorted({"llm", *(f"model:{m}" for p in enabled for m in p.models)})
    if importlib.util.find_spec("llama_cpp") is None:
        return []
    try:
        from helixcode.llm.local import LocalProvider

        name = LocalProvider().model_name
    except Exception:  # the embedded model is optional: no model, no capability
        return []
    return ["llm", f"model:{name}"]


def sandbox_probe(settings: Settings) -> Probe:
    """Whether this machine can confine agent commands under ``agent.sandbox`` (probed once per
    process): its ``capabilities()`` are what agent and test tasks require by default, and its
    ``line()`` is what ``helix worker`` says at start."""
    from helixcode.agent.sandbox import Sandbox

    return Sandbox.from_settings(settings.agent).probe()
