"""GET /metrics: the /api/stats figures in the Prometheus text format.

Each app has its own ``CollectorRegistry`` (no global registry, so two apps in one process, or a
test, never see each other's figures), holding one collector that reads the same snapshots as
/api/stats at scrape time: nothing is counted twice and nothing runs between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from .runtime import Runtime, runtime_of
from .stats import snapshot

__all__ = ["SSEBatcherCollector", "metrics", "new_registry"]

_PREFIX = "sse_batcher_"
# Batcher counters (monotonic since start); everything else numeric in the snapshot is a gauge.
_BATCHER_COUNTERS = (
    ("events_emitted", "Events accepted by emit()."),
    ("events_batched", "Events that travelled inside aggregates."),
    ("events_saved", "Events that did not need a message of their own."),
    ("batches_created", "Aggregate messages created."),
    ("messages_stored", "Messages committed to PostgreSQL."),
    ("events_stored", "Events committed to PostgreSQL."),
    ("rejected_full", "Events refused because the buffer was full."),
    ("retries", "Store writes retried."),
    ("failed_writes", "Store writes that failed."),
    ("dead_lettered_batches", "Batches appended to the dead-letter file."),
    ("rejected_messages", "Messages PostgreSQL refused (quarantined)."),
    ("listener_errors", "Listener or flush-observer failures."),
)
_BATCHER_GAUGES = (
    ("buffer_depth", "Events waiting in the buffer."),
    ("buffer_high_water", "Most events the buffer held at once."),
    ("buffer_capacity", "Events the buffer can hold."),
    ("batch_size", "Current batch size."),
    ("batch_timeout_seconds", "Current batch timeout."),
)
_HUB_COUNTERS = (
    ("clients_total", "SSE streams opened."),
    ("clients_refused", "SSE streams refused (limit or shutdown)."),
    ("messages_sent", "SSE messages written to clients."),
    ("bytes_sent", "SSE bytes written to clients."),
    ("replayed_messages", "SSE messages replayed from PostgreSQL."),
    ("evictions", "Clients that fell a queue behind and caught up from PostgreSQL."),
    ("send_timeouts", "Streams closed because the peer accepted nothing in time."),
)
_WORKER_FIELDS = ("events", "jobs_running", "jobs_done", "jobs_failed")


def _histogram(name: str, doc: str, hist: dict[str, Any]) -> HistogramMetricFamily:
    # The batcher's buckets are per-bucket counts with a final overflow; Prometheus wants them cumulative.
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(hist["bounds"], hist["counts"], strict=False):
        total += count
        buckets.append((repr(float(bound)), total))
    buckets.append(("+Inf", hist["count"]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist["total"])


class SSEBatcherCollector(Collector):
    """Turns a stats snapshot into Prometheus metrics at scrape time."""

    def __init__(self, source: Callable[[], dict[str, Any] | None]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        stats = self._source()
        if stats is None:
            return []
        return list(self._metrics(stats))

    def _metrics(self, stats: dict[str, Any]) -> Iterator[Metric]:
        batcher = stats["batcher"]
        for key, doc in _BATCHER_COUNTERS:
            if key in batcher:
                yield CounterMetricFamily(f"{_PREFIX}{key}", doc, value=batcher[key])
        for key, doc in _BATCHER_GAUGES:
            if key in batcher:
                yield GaugeMetricFamily(f"{_PREFIX}{key}", doc, value=batcher[key])
        flushes = CounterMetricFamily(f"{_PREFIX}flushes", "Flushes by reason.", labels=["reason"])
        for reason, count in batcher.get("flushes", {}).items():
            flushes.add_metric([reason], count)
        yield flushes
        yield GaugeMetricFamily(
            f"{_PREFIX}running", "1 while the batcher runs.", value=1.0 if batcher.get("state") == "running" else 0.0
        )
        if "batch_size_histogram" in batcher:
            yield _histogram(f"{_PREFIX}flush_events", "Events per flush.", batcher["batch_size_histogram"])
        if "write_latency_histogram" in batcher:
            yield _histogram(
                f"{_PREFIX}store_write_seconds", "Store write latency.", batcher["write_latency_histogram"]
            )
        hub = stats["hub"]
        yield GaugeMetricFamily(f"{_PREFIX}clients", "Open SSE streams.", value=hub["clients"])
        for key, doc in _HUB_COUNTERS:
            yield CounterMetricFamily(f"{_PREFIX}{key}", doc, value=hub[key])
        for key, value in stats["store"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield GaugeMetricFamily(f"{_PREFIX}store_{key}", f"Store statistic {key}.", value=value)
        sizing = stats["sizing"]
        yield GaugeMetricFamily(
            f"{_PREFIX}dynamic_sizing", "1 when the batch size adapts to load.", value=1.0 if sizing["dynamic"] else 0.0
        )
        breaker = sizing.get("breaker")
        if breaker:
            state = GaugeMetricFamily(
                f"{_PREFIX}breaker_state", "1 for the store circuit breaker's current state.", labels=["state"]
            )
            for name in ("closed", "open", "half_open"):
                state.add_metric([name], 1.0 if breaker["state"] == name else 0.0)
            yield state
            yield CounterMetricFamily(
                f"{_PREFIX}breaker_transitions",
                "State changes of the store circuit breaker.",
                value=breaker["transitions"],
            )
            yield CounterMetricFamily(
                f"{_PREFIX}breaker_short_circuited",
                "Writes sent to the dead-letter file because the breaker was open.",
                value=breaker["short_circuited"],
            )
        workers = stats["workers"]
        if workers:
            for field in _WORKER_FIELDS:
                family = GaugeMetricFamily(f"{_PREFIX}worker_{field}", f"Demo worker {field}.", labels=["worker"])
                for worker in workers:
                    family.add_metric([str(worker.get("name", "?"))], float(worker.get(field, 0)))
                yield family
        process = stats["process"]
        yield GaugeMetricFamily(
            f"{_PREFIX}process_cpu_percent", "CPU use since the last reading.", value=process["cpu_percent"]
        )
        yield GaugeMetricFamily(f"{_PREFIX}process_rss_bytes", "Resident memory.", value=process["rss_bytes"])


def new_registry(runtime: Callable[[], Runtime | None]) -> CollectorRegistry:
    """A registry of its own holding one collector over ``runtime()``'s snapshot."""
    registry = CollectorRegistry(auto_describe=False)

    def source() -> dict[str, Any] | None:
        current = runtime()
        return snapshot(current) if current is not None else None

    registry.register(SSEBatcherCollector(source))
    return registry


async def metrics(request: Request) -> Response:
    """GET /metrics."""
    runtime_of(request)  # a clear error when the lifespan never ran
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
