"""Resource use for heartbeats: CPU, memory, disk, and GPUs when present (psutil, nvidia-smi)."""

from __future__ import annotations

import os
from typing import Any

import psutil

from helixcode.worker.capabilities import gpu_info

__all__ = ["ResourceSampler"]


class ResourceSampler:
    """Samples machine and process use. Keep one per worker: CPU percentages are since the last call."""

    def __init__(self, with_gpu: bool = True) -> None:
        self._process = psutil.Process(os.getpid())
        self._with_gpu = with_gpu
        psutil.cpu_percent(None)
        self._process.cpu_percent(None)

    def static(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(os.getcwd())
        gpus = gpu_info() if self._with_gpu else []
        return {
            "cpu_count": os.cpu_count() or 1,
            "memory_total_mb": mem.total // 2**20,
            "disk_free_gb": round(disk.free / 2**30, 1),
            "gpus": [{"name": g.name, "memory_mib": g.memory_mib} for g in gpus],
        }

    def sample(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        sample: dict[str, Any] = {
            "cpu_percent": psutil.cpu_percent(None),
            "memory_percent": mem.percent,
            "process_cpu_percent": self._process.cpu_percent(None),
            "process_rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "load_1m": round(os.getloadavg()[0], 2),
        }
        if self._with_gpu:
            gpus = gpu_info()
            if gpus:
                sample["gpus"] = [
                    {"utilization": g.utilization, "memory_used_mib": g.memory_used_mib} for g in gpus
                ]
        return sample
