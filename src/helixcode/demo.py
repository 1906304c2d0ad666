"""``make demo``: run the sample job on the embedded defaults in a scratch folder, ``.demo/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "examples" / "demo.yaml"


def helix(*args: str, cwd: Path) -> None:
    print(f"\n$ helix {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "helixcode", *args], cwd=cwd, check=True)


def main() -> None:
    work = ROOT / ".demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    os.environ.pop("HELIX_DATABASE_URL", None)
    helix("submit", str(PLAN), cwd=work)
    helix("status", cwd=work)
    job = subprocess.run(
        [sys.executable, "-m", "helixcode", "status", "--json"],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    import json

    job_id = json.loads(job)[0]["id"]
    helix("tasks", job_id, cwd=work)
    helix("events", job_id, cwd=work)


if __name__ == "__main__":
    main()
