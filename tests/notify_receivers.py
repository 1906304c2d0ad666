"""Local receivers for notification tests: a webhook server on loopback and an SMTP server (aiosmtpd).

    hook = WebhookReceiver(secret=b"s3cret").start()
    hook.answer(500, 500)            # the next two requests fail; later ones get 200
    hook.answer(503, path="/b")      # the next request to /b fails
    hook.stop(); hook.start()        # down for a while, then back on the same port
    [r.json["event"] for r in hook.requests if r.status == 200]
    mail = MailReceiver().start()    # mail.url is smtp://127.0.0.1:PORT; mail.messages are parsed

Each request is recorded as it arrives, with the status it is answered with and whether its signature verifies
(``helixcode.domain.notify.verify``, the check a receiver makes).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from helixcode.domain.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.helpers import free_port

__all__ = ["MailReceiver", "Received", "WebhookReceiver"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signed: bool | None  # None: the receiver has no secret

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        owner = self.server.owner
        with owner.lock:
            planned = owner.planned.get(self.path) or owner.planned.get(None)
            status, headers, hold = planned.popleft() if planned else (200, {}, False)
        signed = None
        if owner.secret is not None:
            signed = verify(
                owner.secret,
                self.headers.get(TIMESTAMP_HEADER, ""),
                self.headers.get(SIGNATURE_HEADER, ""),
                body,
                time.time(),
            )
        with owner.lock:
            owner.requests.append(Received(self.path, dict(self.headers.items()), body, status, signed))
        if hold:
            owner.released.wait(30)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: WebhookReceiver


class WebhookReceiver:
    """Records POSTs on a fixed loopback port; can be stopped and started again on that port."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.port = free_port()
        self.secret = secret
        self.requests: list[Received] = []
        self.planned: dict[str | None, deque[tuple[int, dict[str, str], bool]]] = {}
        self.released = threading.Event()
        self.lock = threading.Lock()
        self._server: _Server | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(
        self,
        *statuses: int,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        hold: bool = False,
    ) -> None:
        """Answer the next requests (to ``path``, or to any path) with these statuses, then 200 again;
        with ``hold``, only once ``stop()`` is called (a receiver that hangs; the request is recorded
        when it arrives)."""
        with self.lock:
            planned = self.planned.setdefault(path, deque())
            planned.extend((status, headers or {}, hold) for status in statuses)

    def accepted(self, path: str | None = None) -> list[Received]:
        """The requests answered with 200, at ``path`` if given."""
        with self.lock:
            return [r for r in self.requests if r.status == 200 and (path is None or r.path == path)]


class _Sink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class MailReceiver:
    """An SMTP server on loopback (aiosmtpd) keeping every message it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self._sink = _Sink()
        self._controller = Controller(self._sink, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        return self._sink.messages

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return self._sink.envelopes

    def start(self) -> MailReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
