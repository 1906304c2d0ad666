"""A scripted model: a real OpenAI-compatible HTTP server on loopback that answers with chosen tool calls.

It drives an agent through an exact path, hostile ones included. A script is a list of tool calls
(``("run_command", {"command": "..."})``) chosen by a marker that appears in the task's prompt (its
title, say); reply ``i`` of a conversation is the script's call ``i``, where ``i`` counts the assistant
turns already in the request. That keeps it stateless, so a retried or resumed attempt gets the same
answers. Past the end of the script the model calls ``finish``. Every request is kept, so a test can
read what the agent sent back (tool results) and check that nothing it should not see reached it.

    model = ScriptedModel().start()
    model.script("ESCAPE-1", [("run_command", {"command": "cat /proc/1/environ"})])
    ... a provider of type openai with base_url = model.url + "/v1" ...
    model.tool_results("ESCAPE-1")   # what each call returned, in order
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ScriptedModel", "provider_toml"]

Call = tuple[str, dict[str, Any]]
#: What runs when a reply is about to go out: (marker, round) -> None. For tests that must act at an
#: exact point of an agent's run (stop the worker while it lands, say).
Hook = Callable[[str, int], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.split("?")[0].endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        model = self.server.model
        with model.lock:
            model.requests.append(body)
        if body.get("stream"):
            self._send(400, {"error": {"message": "the scripted model does not stream"}})
            return
        self._send(200, model.reply(body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model: ScriptedModel


class ScriptedModel:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Call]] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.hook: Hook | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.model = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedModel:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, marker: str, calls: Sequence[Call]) -> None:
        self.scripts[marker] = list(calls)

    # -- answering ------------------------------------------------------------------------------

    def _marker(self, messages: Sequence[dict[str, Any]]) -> str | None:
        text = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
        found = [m for m in self.scripts if m in text]
        return min(found, key=text.index) if found else None  # the task's own title comes first

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        marker = self._marker(messages)
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        calls = self.scripts.get(marker or "", [])
        name, args = calls[turn] if turn < len(calls) else ("finish", {"summary": "the script is done"})
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("function", {}).get("name") == "finish":
            name, args = "finish", {"summary": "stopped at the round limit"}
        if self.hook is not None and marker is not None:
            self.hook(marker, turn)
        call = {
            "id": f"call_{turn}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        return {
            "id": f"chatcmpl-{turn}",
            "object": "chat.completion",
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    # -- reading what the agent sent ------------------------------------------------------------

    def tool_results(self, marker: str) -> list[str]:
        """The tool results of the longest conversation for ``marker``, in call order."""
        with self.lock:
            convs = [
                r.get("messages") or []
                for r in self.requests
                if self._marker(r.get("messages") or []) == marker
            ]
        if not convs:
            return []
        longest = max(convs, key=len)
        return [str(m.get("content") or "") for m in longest if m.get("role") == "tool"]

    def everything_sent(self) -> str:
        """Every request body as text: to check that a secret never reached the model."""
        with self.lock:
            return "\n".join(json.dumps(r) for r in self.requests)


def provider_toml(model: ScriptedModel, *, context_length: int = 32_000) -> str:
    """A ``helix.toml`` fragment that makes the scripted model the only provider."""
    return (
        "[llm]\nembedded = false\n\n"
        "[providers.scripted]\n"
        'type = "openai"\n'
        f'base_url = "{model.url}/v1"\n'
        'models = ["scripted"]\n'
        'capabilities = ["tools", "json_schema"]\n'
        f"context_length = {context_length}\n"
    )
