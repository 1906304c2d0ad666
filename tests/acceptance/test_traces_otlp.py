"""Traces over OTLP/HTTP from the real CLI: ``helix submit`` run by a CI job (``TRACEPARENT`` set), then
``helix worker``, both exporting to a collector on loopback that decodes what it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Cli

trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

pytestmark = pytest.mark.slow

CI_TRACE = "0af7651916cd43dd8448eb211c80319c"
CI_SPAN = "b7ad6b7169203331"


class Collector(ThreadingHTTPServer):
    """Takes ``POST /v1/traces`` (protobuf) and keeps each span as a plain dict."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self, body: bytes) -> None:
        request = trace_service.ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    found = {
                        "name": span.name,
                        "trace": span.trace_id.hex(),
                        "span": span.span_id.hex(),
                        "parent": span.parent_span_id.hex() or None,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "service": resource.get("service.name"),
                    }
                    with self.lock:
                        self.spans.append(found)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.append(self.path)
        self.server.take(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_ci_jobs_submit_and_the_workers_attempts_share_one_trace(
    cli: Cli, collector: Collector, tmp_path: Path
) -> None:
    cli.env.update({"HELIX_TRACING_ENABLED": "true", "HELIX_TRACING_ENDPOINT": collector.url})
    plan = {"name": "ci", "tasks": [{"id": "a", "type": "building", "title": "a", "run": {"shell": "true"}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    cli.env["TRACEPARENT"] = f"00-{CI_TRACE}-{CI_SPAN}-01"  # the CI job's step
    job = cli.json("submit", str(tmp_path / "plan.json"))["id"]
    del cli.env["TRACEPARENT"]
    cli("worker", "--exit-when-idle", timeout=120)  # on another host, later: no TRACEPARENT of its own
    assert set(collector.paths) == {"/v1/traces"}

    spans = {s["name"]: s for s in collector.spans}
    submit, attempt = spans["job.submit"], spans["task.attempt"]
    assert (submit["trace"], submit["parent"]) == (CI_TRACE, CI_SPAN)
    assert submit["attributes"]["helix.job.id"] == job
    assert (attempt["trace"], attempt["parent"]) == (CI_TRACE, submit["span"])
    assert attempt["attributes"]["helix.task.key"] == "a"
    assert attempt["attributes"]["helix.task.outcome"] == "succeeded"
    assert spans["task.claim"]["parent"] == submit["span"]
    assert {s["service"] for s in collector.spans} == {"helixcode"}
