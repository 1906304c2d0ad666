"""A counter on loopback that tests run by HelixCode can reach, to count their own runs.

Code a model may have written (the project's tests, in a test cycle) runs in the sandbox, which sees
no host path outside its worktree: a marker file in the test's ``tmp_path`` is invisible to it. So a
test that must behave differently on its first run asks this server instead (the task then needs
``network: true``, which is also a check that the switch works).

    counter = RunCounter().start()
    code = counter.snippet()     # Python that sets ``n`` to this run's number (1, 2, ...)
"""

from __future__ import annotations

import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["RunCounter"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            value = next(self.server.counter)
        body = str(value).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    counter: itertools.count[int]
    lock: threading.Lock


class RunCounter:
    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.counter = itertools.count(1)
        self._server.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> RunCounter:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snippet(self) -> str:
        """Python lines that set ``n`` to the number of this run."""
        return f"import urllib.request\n\nn = int(urllib.request.urlopen({self.url!r}, timeout=10).read())\n"
