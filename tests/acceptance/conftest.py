"""Run the real ``helix`` console script in subprocesses, against a fresh database per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HELIX = shutil.which("helix", path=str(Path(sys.executable).parent)) or "helix"


class Cli:
    def __init__(self, cwd: Path, db_url: str) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
        self.env.update(
            {"HELIX_DATABASE_URL": db_url, "XDG_CONFIG_HOME": str(cwd / ".xdg"), "COLUMNS": "200"}
        )
        self._logs = 0

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [HELIX, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helix {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``helix`` in the background; its output goes to a log file beside the work folder
        (a pipe nobody reads would fill up and block it)."""
        self._logs += 1
        log = (self.cwd.parent / f"helix-{self._logs}.log").open("w")
        try:
            return subprocess.Popen(
                [HELIX, *args], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        finally:
            log.close()


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    return Cli(work, db_url)


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def postgres_control() -> Iterator[Callable[[str], None]]:
    """Stop (immediately) and start the local PostgreSQL cluster; always left running afterwards."""
    import glob

    versions = sorted(glob.glob("/etc/postgresql/*"))
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("no local PostgreSQL cluster to control")
    version = Path(versions[-1]).name

    def control(action: str) -> None:
        args = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
        if action == "stop":
            args += ["-m", "immediate"]
        subprocess.run(args, check=True, capture_output=True, timeout=60)

    try:
        yield control
    finally:
        status = subprocess.run(["pg_ctlcluster", version, "main", "status"], capture_output=True)
        if status.returncode != 0:
            control("start")
