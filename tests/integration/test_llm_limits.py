"""The fleet's shared LLM limits in the database: slots per window, 429 cool-downs that hold every worker
back, providers marked down by one worker's breaker; and three worker processes sharing one quota
against a provider that answers 429 to anything over it (none does)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helixcode.llm import ChatRequest, LLMManager, Message, ModelCapabilities, ProviderEntry
from helixcode.llm.limits import Quota
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.store.store import Store

HI = ChatRequest([Message.user("hi")], max_tokens=8)
CAPS = ModelCapabilities(tools=True, json_schema=True, context_length=4096)


async def test_slots_per_window_then_a_wait_for_the_oldest(store: Store) -> None:
    quota = Quota(rpm=3, window=60.0)  # long: a slow machine between two calls cannot let a slot lapse
    granted = [await store.acquire("p", "m", quota, tokens=10) for _ in range(3)]
    assert all(a.granted and a.ticket for a in granted)
    refused = await store.acquire("p", "m", quota, tokens=10)
    assert not refused.granted
    assert 50 < refused.wait <= 60.0
    assert (await store.acquire("p", "other-model", quota, tokens=10)).granted  # per model


async def test_a_slot_frees_when_the_oldest_leaves_the_window(store: Store) -> None:
    quota = Quota(rpm=1, window=0.5)
    assert (await store.acquire("p", "m", quota, tokens=10)).granted
    refused = await store.acquire("p", "m", quota, tokens=10)
    if not refused.granted:  # on a slow machine the window may have passed already
        assert 0 < refused.wait <= 0.5
        await asyncio.sleep(refused.wait + 0.05)
    assert (await store.acquire("p", "m", quota, tokens=10)).granted


async def test_tokens_per_window_count_what_was_really_used(store: Store) -> None:
    quota = Quota(tpm=1000, window=60.0)
    first = await store.acquire("p", "m", quota, tokens=900)
    assert first.granted
    assert not (await store.acquire("p", "m", quota, tokens=300)).granted  # 900 + 300 > 1000
    assert first.ticket is not None
    await store.settle(first.ticket, 100)  # it used far less than estimated
    assert (await store.acquire("p", "m", quota, tokens=300)).granted


async def test_a_429_and_a_downed_provider_hold_everyone_back(store: Store) -> None:
    # Long holds for what must hold back, so a slow machine between two calls cannot let one lapse.
    await store.block("p", "m", 60)
    held = await store.acquire("p", "m", Quota(), tokens=1)
    assert not held.granted
    assert 50 < held.wait <= 60
    assert not held.down
    await store.block("p", "m", 0.1)  # a shorter block never shortens a longer one
    assert (await store.acquire("p", "m", Quota(), tokens=1)).wait > 50
    assert (await store.acquire("p", "other", Quota(), tokens=1)).granted  # a 429 holds back its model only
    await store.mark_down("q", 60)
    down = await store.acquire("q", "other", Quota(), tokens=1)
    assert down.down
    assert not down.granted
    assert 50 < down.wait <= 60


async def test_a_block_and_a_down_mark_lapse_when_their_time_is_up(store: Store) -> None:
    await store.block("p", "m", 0.3)
    await store.mark_down("q", 0.3)
    for provider, model in (("p", "m"), ("q", "m")):
        held = await store.acquire(provider, model, Quota(), tokens=1)
        if not held.granted:  # on a slow machine the hold may have lapsed already
            assert 0 < held.wait <= 0.3
            await asyncio.sleep(held.wait + 0.05)
            assert (await store.acquire(provider, model, Quota(), tokens=1)).granted


class LimitedProvider(ThreadingHTTPServer):
    """An OpenAI-compatible server that answers 429 to a request over ``limit`` per ``window`` seconds,
    and logs when each request arrived and what it got."""

    daemon_threads = True

    def __init__(self, limit: int, window: float) -> None:
        super().__init__(("127.0.0.1", 0), _LimitedHandler)
        self.limit, self.window = limit, window
        self.log: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def admit(self) -> int:
        with self.lock:
            now = time.monotonic()
            recent = [t for t, status in self.log if status == 200 and t > now - self.window]
            status = 429 if len(recent) >= self.limit else 200
            self.log.append((now, status))
            return status


class _LimitedHandler(BaseHTTPRequestHandler):
    server: LimitedProvider

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.admit()
        body: dict[str, Any] = (
            {"error": {"message": "Rate limit reached", "type": "requests"}}
            if status == 429
            else {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def limited() -> Iterator[LimitedProvider]:
    # The provider's window is a little shorter than the fleet's: a request granted the moment a slot
    # frees reaches it a few milliseconds after the freed one did (the boundary, not the limit).
    server = LimitedProvider(limit=4, window=1.8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def manager(store: Store, url: str, quota: Quota) -> LLMManager:
    provider = OpenAICompatProvider("acct", url, models=["m"], capabilities=CAPS)
    return LLMManager({"acct": ProviderEntry(provider, 1, quota=quota)}, shared=store)


async def test_a_429_seen_by_one_worker_delays_the_others(store: Store, limited: LimitedProvider) -> None:
    limited.limit = 0  # everything gets a 429 with Retry-After: 1
    async with manager(store, limited.url, Quota()) as first, manager(store, limited.url, Quota()) as second:
        first.max_rate_wait = 0.0
        with pytest.raises(Exception):  # noqa: B017, PT011 - the 429, as NoCandidate
            await first.chat(HI)
        assert len(limited.log) == 1
        limited.limit = 100
        started = time.monotonic()
        assert (await second.chat(HI)).content == "ok"  # it never saw a 429 itself
        assert time.monotonic() - started >= 0.8  # but waited out the fleet's cool-down
    assert [status for _, status in limited.log] == [429, 200]


SCRIPT = """
import asyncio, sys
from helixcode.config import DatabaseSettings, Settings
from helixcode.llm import ChatRequest, LLMManager, Message, ModelCapabilities, ProviderEntry
from helixcode.llm.limits import Quota
from helixcode.llm.openai_compat import OpenAICompatProvider
from helixcode.store.store import Store

async def main(db, url, n):
    store = await Store.open(Settings(database=DatabaseSettings(url=db)), upgrade=False)
    caps = ModelCapabilities(tools=True, json_schema=True, context_length=4096)
    provider = OpenAICompatProvider("acct", url, models=["m"], capabilities=caps)
    entry = ProviderEntry(provider, 1, quota=Quota(rpm=4, window=2.0))
    async with LLMManager({"acct": entry}, shared=store) as llm:
        for _ in range(n):
            await llm.chat(ChatRequest([Message.user("hi")], max_tokens=8))
    await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_three_workers_share_one_quota_and_get_no_429(
    store: Store, settings: Any, limited: LimitedProvider, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    url = settings.database.url
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), url, limited.url, "4", stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), 100)
        assert proc.returncode == 0, err.decode()
    statuses = [status for _, status in limited.log]
    assert statuses == [200] * 12, statuses  # never a 429
    times = sorted(t for t, _ in limited.log)
    busiest = max(sum(1 for u in times if t <= u < t + 1.8) for t in times)
    assert busiest <= 4  # the provider never saw more than the quota in a window
    assert times[-1] - times[0] >= 2 * 1.8  # 12 requests at 4 per window need three windows
