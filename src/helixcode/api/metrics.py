"""``/metrics`` in Prometheus text format, for the whole fleet, from the database.

Counters and histograms come from the durable rollup of the event log and the model-call log
(``store.metrics``): every task claimed and every model call made by any worker, counted once, kept
across restarts and the pruning of the logs, and the same whichever API replica is scraped. They trail
the logs by up to one reaper tick. Gauges (the queue's depth, workers) are read live. A scrape reads one
row per series and the unfinished tasks, never the logs, so its cost does not grow with their size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from helixcode.domain.enums import Priority, TaskStatus
from helixcode.domain.metrics import FAMILIES, Family, MetricsSnapshot, Sample, format_le
from helixcode.domain.records import WorkerInfo

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Metric = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class _Snapshot(Collector):
    def __init__(self, snapshot: MetricsSnapshot, workers: Iterable[WorkerInfo]) -> None:
        self.snapshot = snapshot
        self.workers = list(workers)

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[Sample]] = {}
        for sample in self.snapshot.samples:
            by_name.setdefault(sample.name, []).append(sample)
        for family in FAMILIES:
            if family.kind == "counter":
                yield _counter(family, by_name.get(family.total, []))
            else:
                yield _histogram(family, by_name.get(family.bucket, []), by_name.get(family.sum, []))
        yield self._queue_depth()
        yield from self._workers()
        rolled = GaugeMetricFamily(
            "helix_metrics_rollup_timestamp_seconds",
            "when the rollup of each log (events, llm_calls) into the counters last advanced",
            labels=["log"],
        )
        for source, at in sorted(self.snapshot.rolled_up_at.items()):
            rolled.add_metric([source], at)
        yield rolled

    def _queue_depth(self) -> GaugeMetricFamily:
        depth = GaugeMetricFamily(
            "helix_queue_depth", "unfinished tasks by priority and status, now", labels=["priority", "status"]
        )
        for priority in Priority:
            for status in TaskStatus:
                if not status.terminal:
                    n = self.snapshot.queue_depth.get((priority.value, status.value), 0)
                    depth.add_metric([priority.value, status.value], n)
        return depth

    def _workers(self) -> Iterator[GaugeMetricFamily]:
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


def _values(family: Family, sample: Sample) -> list[str]:
    return [sample.labels.get(label, "") for label in family.labels]


def _counter(family: Family, samples: list[Sample]) -> CounterMetricFamily:
    metric = CounterMetricFamily(family.name, family.help, labels=list(family.labels))
    if not family.labels and not samples:
        metric.add_metric([], 0.0)
    for sample in sorted(samples, key=lambda s: _values(family, s)):
        metric.add_metric(_values(family, sample), sample.value)
    return metric


def _histogram(family: Family, buckets: list[Sample], sums: list[Sample]) -> HistogramMetricFamily:
    """Buckets are stored cumulative, as exposed; a bucket with no row has seen no observation."""
    metric = HistogramMetricFamily(family.name, family.help, labels=list(family.labels))
    counts: dict[tuple[str, ...], dict[str, float]] = {}
    for sample in buckets:
        counts.setdefault(tuple(_values(family, sample)), {})[sample.labels.get("le", "")] = sample.value
    totals = {tuple(_values(family, s)): s.value for s in sums}
    for labels in sorted(counts.keys() | totals.keys()):
        seen = counts.get(labels, {})
        metric.add_metric(
            list(labels),
            [(format_le(b), seen.get(format_le(b), 0.0)) for b in family.buckets],
            totals.get(labels, 0.0),
        )
    return metric


def render_metrics(snapshot: MetricsSnapshot, workers: Iterable[WorkerInfo]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snapshot, workers))
    return generate_latest(registry)
