"""``/metrics`` in Prometheus text format: queue state from the database, LLM use from this process.

Counts come from the database on each scrape, so every API replica reports the same totals and a
restart loses nothing; LLM token and latency figures are only those of calls made in this process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from helixcode.domain.enums import TaskStatus
from helixcode.domain.records import QueueCounts, WorkerInfo
from helixcode.llm.manager import CallRecord

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Named counters over event kinds, for dashboards that should not need to know the log's vocabulary.
EVENT_COUNTERS = {
    "claims": ("claimed", "tasks claimed by workers"),
    "completions": ("succeeded", "task attempts that succeeded (and jobs that finished)"),
    "failures": ("failed", "tasks failed for good (and failed jobs)"),
    "retries": ("retried", "failed attempts scheduled for another try"),
    "requeues": ("requeued", "tasks handed back or requeued after a lost lease"),
}


class _Snapshot(Collector):
    def __init__(
        self, counts: QueueCounts, workers: Iterable[WorkerInfo], llm_records: Iterable[CallRecord]
    ) -> None:
        self.counts = counts
        self.workers = list(workers)
        self.records = list(llm_records)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily]:
        depth = GaugeMetricFamily("helix_tasks", "tasks by status (queue depth)", labels=["status"])
        for status in TaskStatus:
            depth.add_metric([status.value], self.counts.tasks.get(status.value, 0))
        yield depth
        by_kind = CounterMetricFamily("helix_events", "events in the log by kind", labels=["kind"])
        for kind, n in sorted(self.counts.events.items()):
            by_kind.add_metric([kind], n)
        yield by_kind
        for name, (kind, doc) in EVENT_COUNTERS.items():
            yield CounterMetricFamily(f"helix_task_{name}", doc, value=self.counts.events.get(kind, 0))
        yield CounterMetricFamily("helix_lease_losses", "leases that expired", value=self.counts.lease_losses)
        workers = GaugeMetricFamily("helix_workers", "registered workers by status", labels=["status"])
        slots = GaugeMetricFamily("helix_worker_slots", "task slots of active workers")
        by_status: dict[str, int] = {}
        for w in self.workers:
            by_status[w.status] = by_status.get(w.status, 0) + 1
        for state, n in sorted(by_status.items()):
            workers.add_metric([state], n)
        slots.add_metric([], sum(w.concurrency for w in self.workers if w.status == "active"))
        yield workers
        yield slots
        yield from self._llm()

    def _llm(self) -> Iterator[CounterMetricFamily | SummaryMetricFamily]:
        labels = ["provider", "model"]
        calls = CounterMetricFamily("helix_llm_calls", "LLM calls by outcome", labels=[*labels, "outcome"])
        tokens = CounterMetricFamily("helix_llm_tokens", "LLM tokens used", labels=[*labels, "kind"])
        latency = SummaryMetricFamily("helix_llm_latency_seconds", "LLM call latency", labels=labels)
        grouped: dict[tuple[str, str], list[CallRecord]] = {}
        for r in self.records:
            grouped.setdefault((r.provider, r.model), []).append(r)
        for (provider, model), records in sorted(grouped.items()):
            ok = sum(1 for r in records if r.ok)
            calls.add_metric([provider, model, "ok"], ok)
            calls.add_metric([provider, model, "error"], len(records) - ok)
            prompt = sum(r.usage.prompt_tokens for r in records if r.usage)
            completion = sum(r.usage.completion_tokens for r in records if r.usage)
            tokens.add_metric([provider, model, "prompt"], prompt)
            tokens.add_metric([provider, model, "completion"], completion)
            latency.add_metric([provider, model], len(records), sum(r.latency_s for r in records))
        yield calls
        yield tokens
        yield latency


def render_metrics(
    counts: QueueCounts, workers: Iterable[WorkerInfo], llm_records: Iterable[CallRecord] = ()
) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(counts, workers, llm_records))
    return generate_latest(registry)
