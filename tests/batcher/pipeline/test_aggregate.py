from __future__ import annotations

from pathlib import Path

import msgspec

from sse_batcher.batcher import PostgresStore, SSEEventBatcher
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate, aggregate_type
from sse_batcher.batcher.rules import AggregationRules, TypeRule
from sse_batcher.server.client import unroll
from tests.batcher.pipeline.test_facade import stored_rows, stored_seqs
from tests.collect import batcher_config


def _event(seq: int, type_: str = "JOB_STARTED", source: str = "thumbnail", **kw: object) -> Event:
    data = kw.pop("data", {"job_id": seq})
    return Event(type_, source, seq, 1000.0 + seq, msgspec.Raw(msgspec.json.encode(data)), **kw)  # type: ignore[arg-type]


def test_aggregate_names_follow_the_design() -> None:
    assert aggregate_type("JOB_STARTED") == "JOBS_BATCH_STARTED"
    assert aggregate_type("FRAME_RENDERED") == "FRAME_RENDERED_BATCH"


def test_group_of_one_stays_a_plain_event() -> None:
    [message] = aggregate([_event(1)], "o")
    assert message.type == "JOB_STARTED"
    assert message.event_count == 1
    assert msgspec.json.decode(message.payload) == {
        "type": "JOB_STARTED",
        "source": "thumbnail",
        "seq": 1,
        "ts": 1001.0,
        "data": {"job_id": 1},
    }


def test_three_job_started_become_one_aggregate_holding_every_event_in_order() -> None:
    [message] = aggregate([_event(1), _event(2), _event(3)], "o")
    body = msgspec.json.decode(message.payload)
    assert message.type == body["type"] == "JOBS_BATCH_STARTED"
    assert body["batch_count"] == 3
    assert body["job_ids"] == [1, 2, 3]
    assert [e["seq"] for e in body["events"]] == [1, 2, 3]
    assert message.event_type == "JOB_STARTED"
    assert message.idem_key == "o:1"
    assert list(body) == ["type", "event_type", "source", "batch_count", "job_ids", "events"]
    assert body["event_type"] == "JOB_STARTED"


def test_aggregate_says_type_and_source_once_and_inner_events_keep_seq_ts_and_data() -> None:
    [message] = aggregate([_event(1), _event(2, key="k")], "o")
    body = msgspec.json.decode(message.payload)
    assert (body["event_type"], body["source"]) == ("JOB_STARTED", "thumbnail")
    assert body["events"] == [
        {"seq": 1, "ts": 1001.0, "data": {"job_id": 1}},
        {"seq": 2, "ts": 1002.0, "data": {"job_id": 2}, "key": "k"},
    ]


# The aggregate of docs/http-api.md's wire format; tests/frontend/sse_client.test.mjs unrolls these same bytes.
WIRE_AGGREGATE = (
    b'{"type":"JOBS_BATCH_STARTED","event_type":"JOB_STARTED","source":"thumbnail","batch_count":3,'
    b'"job_ids":[123,124,125],"events":[{"seq":1007,"ts":1763870000.123,"data":{"job_id":123}},'
    b'{"seq":1008,"ts":1763870000.124,"data":{"job_id":124}},{"seq":1009,"ts":1763870000.125,"data":{"job_id":125}}]}'
)


def test_aggregate_bytes_are_the_design_wire_format() -> None:
    events = [
        Event("JOB_STARTED", "thumbnail", seq, ts, msgspec.Raw(b'{"job_id":%d}' % job))
        for seq, ts, job in [(1007, 1763870000.123, 123), (1008, 1763870000.124, 124), (1009, 1763870000.125, 125)]
    ]
    [message] = aggregate(events, "o")
    assert message.payload == WIRE_AGGREGATE


def test_compact_aggregates_unroll_to_exactly_the_events_that_travelling_alone_would_show() -> None:
    events = [_event(1), _event(2, key="a"), _event(3, "FRAME", "r", data={"x": [1, "two"]}), _event(4, "FRAME", "r")]
    alone = [msgspec.json.decode(m.payload) for e in events for m in aggregate([e], "o")]
    unrolled = [event for m in aggregate(events, "o") for event in unroll(m.payload)]
    assert len(aggregate(events, "o")) == 2
    assert sorted(unrolled, key=lambda e: e["seq"]) == alone


def test_groups_split_by_source_and_type_and_are_ordered_by_first_seq() -> None:
    events = [
        _event(1, "JOB_PROGRESS", "a"),
        _event(2, "JOB_STARTED", "b"),
        _event(3, "JOB_PROGRESS", "a"),
        _event(4, "JOB_STARTED", "a"),
        _event(5, "JOB_STARTED", "b"),
    ]
    messages = aggregate(events, "o")
    assert [(m.source, m.type, m.first_seq, m.event_count) for m in messages] == [
        ("a", "JOBS_BATCH_PROGRESS", 1, 2),
        ("b", "JOBS_BATCH_STARTED", 2, 2),
        ("a", "JOB_STARTED", 4, 1),
    ]


def test_job_ids_absent_when_events_carry_none() -> None:
    [message] = aggregate([_event(1, "PING", data={"x": 1}), _event(2, "PING", data={"x": 2})], "o")
    body = msgspec.json.decode(message.payload)
    assert body["type"] == "PING_BATCH"
    assert "job_ids" not in body


def test_critical_and_unbatched_events_travel_alone() -> None:
    events = [_event(1), _event(2), _event(3, priority="critical"), _event(4, batched=False), _event(5), _event(6)]
    messages = aggregate(events, "o")
    assert [(m.type, m.event_count) for m in messages] == [
        ("JOBS_BATCH_STARTED", 2),
        ("JOB_STARTED", 1),
        ("JOB_STARTED", 1),
        ("JOBS_BATCH_STARTED", 2),
    ]
    assert msgspec.json.decode(messages[1].payload)["priority"] == "critical"
    assert msgspec.json.decode(messages[2].payload)["batched"] is False


def test_an_event_travelling_alone_in_the_middle_of_its_group_keeps_the_emit_order() -> None:
    """Found by tests/batcher/test_model.py: the critical event used to come after the aggregate
    that held the events on both sides of it, so a client reading in id order saw 1, 3, 2."""
    messages = aggregate([_event(1), _event(2, priority="critical"), _event(3)], "o")
    assert [e["seq"] for m in messages for e in unroll(m.payload)] == [1, 2, 3]


def test_a_group_larger_than_the_message_bound_is_cut_into_messages_under_it() -> None:
    def big(seq: int, **kw: object) -> Event:
        data = msgspec.json.encode({"job_id": "j" * 300 + str(seq), "blob": "x" * 2000})
        return Event("JOB_PROGRESS", "w", seq, 1733500000.123, msgspec.Raw(data), **kw)  # type: ignore[arg-type]

    events = [big(seq, key=f"k{seq % 7}" * 20) for seq in range(1, 201)]
    for rules in (None, AggregationRules(types={"JOB_PROGRESS": TypeRule(group_identical=True)})):
        messages = aggregate(events, "o", rules, max_message_bytes=16_384)
        assert len(messages) > 1
        assert max(len(m.payload) for m in messages) <= 16_384
        assert [e["seq"] for m in messages for e in unroll(m.payload)] == list(range(1, 201))
    # Unbounded, they stay one aggregate; a single event larger than the bound still travels.
    assert len(aggregate(events, "o")) == 1
    [alone] = aggregate(events[:1], "o", max_message_bytes=100)
    assert alone.event_count == 1


async def test_every_stored_message_stays_under_the_configured_bound(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    cfg = batcher_config(tmp_path, max_message_bytes=8192)
    async with SSEEventBatcher(store, cfg) as batcher:
        for i in range(100):
            batcher.emit("T", {"i": i, "pad": "p" * 500}, source="s")
        assert await batcher.flush(timeout=10)
    rows = await stored_rows(dsn)
    assert len(rows) > 1 and max(len(row["data"].encode()) for row in rows) <= 8192
    assert stored_seqs(rows) == list(range(1, 101))


def test_a_keyed_event_keeps_its_key_beside_the_message_never_in_its_payload() -> None:
    [keyed] = aggregate([_event(1, idempotency_key="order-1", data={"job_id": 1})], "p")
    assert keyed.idem_key == "k:order-1"
    assert b"order-1" not in keyed.payload and b"idempotency_key" not in keyed.payload
    # A retry: the same content at another seq and time.
    [retried] = aggregate([_event(7, idempotency_key="order-1", data={"job_id": 1})], "p")
    [other] = aggregate([_event(1, idempotency_key="order-1", data={"job_id": 2})], "p")
    assert keyed.idem_digest == retried.idem_digest != other.idem_digest
    [plain] = aggregate([_event(1)], "p")
    assert plain.idem_digest == ""
