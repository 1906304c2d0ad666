"""A real HTTP server on loopback that replays recorded provider transcripts.

Each route answers from a queue of :class:`Reply` (the last one repeats). Streaming replies go out in chunked
transfer encoding, one chunk per SSE event or NDJSON line, so clients see the same framing as from the real
servers; ``drop=True`` hangs up before the terminating chunk, as a crashed server would. ``stop()`` also
closes kept-alive connections, so a stopped server refuses everything like a dead one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TRANSCRIPTS = Path(__file__).parent / "transcripts"
#: The real llama server's window in these tests: small, so the overflow test is cheap.
LLAMA_N_CTX = 512

__all__ = ["LLAMA_N_CTX", "TRANSCRIPTS", "ReplayServer", "Reply", "json_reply", "transcript"]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] | None = None  # streamed when set
    delay: float = 0.0  # seconds before each chunk
    drop: bool = False  # hang up mid-stream


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode())


def transcript(name: str, *, drop: bool = False, delay: float = 0.0) -> Reply:
    """A recorded reply: ``.json`` whole (not streamed), ``.sse`` split into events, ``.ndjson`` into
    lines."""
    text = (TRANSCRIPTS / name).read_text()
    if name.endswith(".json"):
        return Reply(200, {"Content-Type": "application/json"}, text.encode(), delay=delay)
    if name.endswith(".sse"):
        parts = [p + "\n\n" for p in text.split("\n\n") if p.strip()]
        ctype = "text/event-stream; charset=utf-8"
    else:
        parts = [line + "\n" for line in text.splitlines() if line.strip()]
        ctype = "application/x-ndjson"
    return Reply(200, {"Content-Type": ctype}, chunks=[p.encode() for p in parts], drop=drop, delay=delay)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path
        body = json.loads(raw) if raw else None
        self.server.replay.requests.append((self.command, path, body, dict(self.headers)))
        reply = self.server.replay.next_reply(self.command, path.split("?")[0])
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.chunks is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in reply.chunks:
            if reply.delay:
                time.sleep(reply.delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    replay: ReplayServer
    lock: threading.Lock
    connections: set[socket.socket]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up is part of the scenarios


class ReplayServer:
    def __init__(self, port: int = 0) -> None:
        self.routes: dict[tuple[str, str], deque[Reply]] = {}
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.replay = self
        self._server.lock = threading.Lock()
        self._server.connections = set()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, method: str, path: str, *replies: Reply) -> ReplayServer:
        self.routes.setdefault((method, path), deque()).extend(replies)
        return self

    def next_reply(self, method: str, path: str) -> Reply:
        queue = self.routes.get((method, path))
        if not queue:
            return json_reply({"detail": "Not Found"}, 404)
        return queue.popleft() if len(queue) > 1 else queue[0]

    def bodies(self, path: str) -> list[Any]:
        return [body for _, p, body, _ in self.requests if p.split("?")[0] == path]

    def start(self) -> ReplayServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and hang up every open connection: from now on, connections are refused."""
        self._server.shutdown()
        self._server.server_close()
        with self._server.lock:
            for conn in list(self._server.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
