"""Delivery latency: the age of each event when the hub first hands it to a client."""

from __future__ import annotations

import anyio
from prometheus_client.parser import text_string_to_metric_families

from sse_batcher.batcher import StoredMessage
from sse_batcher.server.stream.hub import Hub
from sse_batcher.server.stream.latency import DeliveryLatency
from tests.server.live import LiveServer
from tests.server.sse import publish, subscribed


def _message(payload: bytes, id_: int = 1) -> StoredMessage:
    return StoredMessage(id_, "A", "A", "s", 1, payload, 0.0)


def test_an_aggregate_adds_the_age_of_each_inner_event() -> None:
    latency = DeliveryLatency(bounds=(0.1, 1.0, 10.0))
    single = _message(b'{"type":"A","source":"s","seq":1,"ts":99.95,"data":{}}')
    aggregate = _message(
        b'{"type":"AS_BATCH","event_type":"A","source":"s","batch_count":3,"ts":99.5,'
        b'"events":[{"seq":2,"ts":95.0,"data":{"x":[1,{"ts":0}]}},{"seq":3,"ts":99.5,"data":{}},{"seq":4,"ts":99.5}]}'
    )
    latency.observe_messages([single, aggregate], now=100.0)
    snapshot = latency.statistics()
    # 0.05 s, then 5 s, 0.5 s and 0.5 s: one per original event, a nested "ts" inside data is not one.
    assert (snapshot.counts, snapshot.count) == ((1, 2, 1, 0), 4)
    assert abs(snapshot.total - 6.05) < 1e-9


def test_payloads_without_a_ts_are_counted_apart_and_a_future_ts_is_age_zero() -> None:
    latency = DeliveryLatency(bounds=(0.1,))
    latency.observe_messages([_message(b"{}"), _message(b"not json"), _message(b'{"ts":101.0}')], now=100.0)
    assert latency.undated == 2
    assert latency.statistics().counts == (1, 0) and latency.statistics().total == 0.0


def test_the_hub_measures_a_message_once_whatever_the_audience() -> None:
    latency = DeliveryLatency()
    hub = Hub(store=None, queue_size=10, max_clients=10, on_fanout=latency.observe_messages)  # type: ignore[arg-type]
    hub.publish([_message(b'{"ts":1.0}', 1)])
    assert latency.statistics().count == 0  # nobody got it
    for _ in range(3):
        hub.open()
    hub.open(types=["B"])
    hub.publish([_message(b'{"ts":1.0}', 2), _message(b'{"ts":1.0}', 3)])
    assert latency.statistics().count == 2


async def test_stats_and_metrics_show_delivery_and_commit_latency(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client)
        await received.connected.wait()
        await publish(client, [{"type": "JOB_STARTED", "data": {"job_id": i}} for i in range(3)])
        await received.wait_for(lambda r: r.count() == 3)
        assert await live.runtime.batcher.flush(timeout=10)
        stats = (await client.get("/api/stats")).json()
        text = (await client.get("/metrics")).text
        tg.cancel_scope.cancel()
    delivery, commit = stats["latency"]["delivery"], stats["latency"]["commit"]
    assert set(delivery) == set(commit) == {"bounds", "counts", "total", "count"}
    # Three events in one aggregate, handed to the one client once: three ages.
    assert delivery["count"] == sum(delivery["counts"]) == 3 and len(delivery["counts"]) == len(delivery["bounds"]) + 1
    assert delivery["total"] > 0
    assert commit == stats["batcher"]["write_latency_histogram"] and commit["count"] >= 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, want in (("sse_batcher_delivery_age_seconds", 3), ("sse_batcher_commit_seconds", commit["count"])):
        family = families[name]
        assert family.type == "histogram"
        samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
        assert samples[(f"{name}_count", None)] == want
        assert samples[(f"{name}_bucket", "+Inf")] == want
