"""``make demo``: plan, execute and merge a job on a small sample repository, with live progress.

It creates ``.demo/sample`` (a tiny Python package with a passing test, committed), then runs
``helix run GOAL --repo sample`` from ``.demo`` (so the database is ``.demo/.helix/helix.db``) and shows
the merged branch. On the embedded defaults (no provider configured: the in-process SmolLM2-135M)
`helix run` itself keeps plans and tool rounds small (``cli.run.EMBEDDED_LIMITS``, and it says so), so
the whole job takes a few minutes on 2 cores; what that model writes is nonsense, but every step is
real: a schema-constrained plan, forced tool calls, WIP commits and checkpoints, tests run, merges.
With a capable provider configured the same command does real work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOAL = "Add a farewell(name) function to greet.py next to greet(name), and document both in README.md"

FILES = {
    "README.md": "# greet\n\nA tiny greeting library.\n",
    "greet.py": 'def greet(name: str) -> str:\n    return f"Hello, {name}!"\n',
    "tests/__init__.py": "",
    "tests/test_greet.py": (
        "import unittest\n\nfrom greet import greet\n\n\n"
        "class GreetTest(unittest.TestCase):\n"
        "    def test_greet(self) -> None:\n"
        '        self.assertEqual(greet("Ada"), "Hello, Ada!")\n'
    ),
}


def git(*args: str, cwd: Path) -> str:
    ident = ["-c", "user.name=HelixCode demo", "-c", "user.email=demo@localhost"]
    return subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_sample(root: Path) -> Path:
    repo = root / "sample"
    repo.mkdir(parents=True)
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "sample: greet()", cwd=repo)
    return repo


def main() -> None:
    work = ROOT / ".demo"
    shutil.rmtree(work, ignore_errors=True)
    repo = make_sample(work)
    # Named, not discovered: a .helix/helix.db in a folder above would otherwise be found first.
    os.environ["HELIX_DATABASE_URL"] = f"sqlite+aiosqlite:///{work / '.helix' / 'helix.db'}"
    test = f"{sys.executable} -m unittest -q tests.test_greet"
    # On the embedded model, `helix run` applies the small limits itself (and prints them).
    args = ["run", GOAL, "--repo", str(repo), "--workers", "2", "--test-command", test]
    print(f"$ helix {' '.join(args[:2])!s} ...  (sample repository: {repo})", flush=True)
    started = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "helixcode", *args], cwd=work, check=False).returncode
    print(f"\nhelix run finished in {time.monotonic() - started:.0f}s with exit code {code}")
    branches = [
        b.strip() for b in git("branch", "--list", "helix/*", "--format=%(refname:short)", cwd=repo).split()
    ]
    job = next((b for b in branches if b.count("/") == 1), None)
    if job:
        print(f"\n$ git log --graph --oneline {job}\n{git('log', '--graph', '--oneline', job, cwd=repo)}")
    sys.exit(code)


if __name__ == "__main__":
    main()
