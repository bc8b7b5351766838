"""GET /metrics: the /api/stats figures in the Prometheus text format.

Each app has its own ``CollectorRegistry`` (no global registry, so two apps in one process, or a
test, never see each other's figures), holding one collector that reads the same snapshots as
/api/stats at scrape time: nothing is counted twice and nothing runs between scrapes.

Every family carries a ``node`` label (the node id): several processes behind one port
answer /metrics in turn, and the label keeps their series apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.server.app.runtime import Runtime, runtime_of
from sse_batcher.server.app.stats import snapshot

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
    ("lagged", "Clients that fell a queue behind and caught up from PostgreSQL."),
    ("send_timeouts", "Streams closed because the peer accepted nothing in time."),
)
# The latest state's counters, from the store's statistics; exported as counters, not gauges.
_STATE_COUNTERS = (
    ("state_displaced", "Keys evicted from the latest state past SSE_STATE_MAX_KEYS, idle longest first."),
    ("state_expired", "Keys that left the latest state with their last event, at retention."),
    ("state_snapshots", "State snapshots read (/events?snapshot=1 and /api/state)."),
)
_WORKER_FIELDS = ("events", "jobs_running", "jobs_done", "jobs_failed")


def _histogram(name: str, doc: str, node: str, hist: dict[str, Any]) -> HistogramMetricFamily:
    # The batcher's buckets are per-bucket counts with a final overflow; Prometheus wants them cumulative.
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(hist["bounds"], hist["counts"], strict=False):
        total += count
        buckets.append((repr(float(bound)), total))
    buckets.append(("+Inf", hist["count"]))
    family = HistogramMetricFamily(name, doc, labels=["node"])
    family.add_metric([node], buckets, sum_value=hist["total"])
    return family


class _Families:
    """Metric families that all carry a ``node`` label, so one scrape config covers every node."""

    def __init__(self, node: str) -> None:
        self.node = node

    def counter(self, key: str, doc: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(f"{_PREFIX}{key}", doc, labels=["node"])
        family.add_metric([self.node], value)
        return family

    def gauge(self, key: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"{_PREFIX}{key}", doc, labels=["node"])
        family.add_metric([self.node], value)
        return family

    def labelled_counter(self, key: str, doc: str, label: str, values: dict[str, float]) -> CounterMetricFamily:
        family = CounterMetricFamily(f"{_PREFIX}{key}", doc, labels=["node", label])
        for name, value in values.items():
            family.add_metric([self.node, name], value)
        return family

    def labelled_gauge(self, key: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"{_PREFIX}{key}", doc, labels=["node", label])
        for name, value in values.items():
            family.add_metric([self.node, name], value)
        return family


def _state_counters(f: _Families, store: dict[str, Any]) -> Iterator[Metric]:
    """The latest state's counters, as counters."""
    for key, doc in _STATE_COUNTERS:
        if key in store:
            yield f.counter(key, doc, store[key])


class SSEBatcherCollector(Collector):
    """Turns a stats snapshot into Prometheus metrics at scrape time, every one labelled with the node."""

    def __init__(self, source: Callable[[], dict[str, Any] | None]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        stats = self._source()
        if stats is None:
            return []
        return list(self._metrics(stats))

    def _metrics(self, stats: dict[str, Any]) -> Iterator[Metric]:
        node = str(stats.get("node", {}).get("id", ""))
        f = _Families(node)
        batcher = stats["batcher"]
        for key, doc in _BATCHER_COUNTERS:
            if key in batcher:
                yield f.counter(key, doc, batcher[key])
        for key, doc in _BATCHER_GAUGES:
            if key in batcher:
                yield f.gauge(key, doc, batcher[key])
        yield f.labelled_counter("flushes", "Flushes by reason.", "reason", batcher.get("flushes", {}))
        yield f.gauge("running", "1 while the batcher runs.", 1.0 if batcher.get("state") == "running" else 0.0)
        if "batch_size_histogram" in batcher:
            yield _histogram(f"{_PREFIX}flush_events", "Events per flush.", node, batcher["batch_size_histogram"])
        if "write_latency_histogram" in batcher:
            yield _histogram(
                f"{_PREFIX}store_write_seconds", "Store write latency.", node, batcher["write_latency_histogram"]
            )
        latency = stats.get("latency", {})
        if "delivery" in latency:
            yield _histogram(
                f"{_PREFIX}delivery_age_seconds",
                "Age of each original event (now minus its emit ts) when the hub first hands it to a client.",
                node,
                latency["delivery"],
            )
        if "commit" in latency:
            yield _histogram(f"{_PREFIX}commit_seconds", "Store commit latency of a batch.", node, latency["commit"])
        hub = stats["hub"]
        yield f.gauge("clients", "Open SSE streams.", hub["clients"])
        for key, doc in _HUB_COUNTERS:
            yield f.counter(key, doc, hub[key])
        state_keys = {key for key, _ in _STATE_COUNTERS}
        for key, value in stats["store"].items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key not in state_keys:
                yield f.gauge(f"store_{key}", f"Store statistic {key}.", value)
        yield from _state_counters(f, stats["store"])
        sizing = stats["sizing"]
        yield f.gauge("dynamic_sizing", "1 when the batch size adapts to load.", 1.0 if sizing["dynamic"] else 0.0)
        breaker = sizing.get("breaker")
        if breaker:
            states = {name: 1.0 if breaker["state"] == name else 0.0 for name in ("closed", "open", "half_open")}
            yield f.labelled_gauge("breaker_state", "1 for the store circuit breaker's current state.", "state", states)
            yield f.counter(
                "breaker_transitions", "State changes of the store circuit breaker.", breaker["transitions"]
            )
            yield f.counter(
                "breaker_short_circuited",
                "Writes sent to the dead-letter file because the breaker was open.",
                breaker["short_circuited"],
            )
        workers = stats["workers"]
        if workers:
            for field in _WORKER_FIELDS:
                values = {str(worker.get("name", "?")): float(worker.get(field, 0)) for worker in workers}
                yield f.labelled_gauge(f"worker_{field}", f"Demo worker {field}.", "worker", values)
        # None when the OS refused to say (no file descriptor left): the family is then left out.
        process = stats["process"]
        if process["cpu_percent"] is not None:
            yield f.gauge("process_cpu_percent", "CPU use since the last reading.", process["cpu_percent"])
        if process["rss_bytes"] is not None:
            yield f.gauge("process_rss_bytes", "Resident memory.", process["rss_bytes"])
        yield from _node_metrics(f, stats)


def _node_metrics(f: _Families, stats: dict[str, Any]) -> Iterator[Metric]:
    """This node's place in the log, and how many nodes its last heartbeat saw alive."""
    this = stats.get("node", {})
    for key, doc in (
        ("follower_last_id", "The last message id this node handed to its SSE clients."),
        ("newest_id", "The newest message id committed, as this node last saw it."),
        ("follower_lag", "Messages committed that this node has not handed to its clients yet."),
    ):
        value = this.get("lag" if key == "follower_lag" else key)
        if value is not None:
            yield f.gauge(key, doc, value)
    alive = sum(1 for node in stats.get("nodes", []) if node.get("alive"))
    yield f.gauge("nodes_alive", "Nodes whose heartbeat is recent, as this node last read them.", alive)


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
