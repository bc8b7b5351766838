"""Group shaping through the aggregation: key coalescing, identical grouping, group size, unbatched types."""

from __future__ import annotations

from typing import Any

import msgspec

from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.batcher.rules import AggregationRules, TypeRule


def event(seq: int, type_: str = "JOB_PROGRESS", key: str | None = None, data: Any = None, source: str = "w") -> Event:
    raw = msgspec.json.encode({"job_id": seq} if data is None else data)
    return Event(type_, source, seq, 1000.0 + seq, msgspec.Raw(raw), key=key)


def body(payload: bytes) -> Any:
    return msgspec.json.decode(payload)


def test_key_coalescing_keeps_the_latest_per_key_and_says_how_many_were_superseded() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(coalesce="key")})
    events = [event(1, key="a"), event(2, key="b"), event(3, key="a"), event(4), event(5, key="a")]
    [message] = aggregate(events, "o", rules)
    payload = body(message.payload)
    assert [e["seq"] for e in payload["events"]] == [2, 4, 5]
    assert (payload["batch_count"], payload["superseded"], message.event_count) == (3, 2, 3)


def test_coalescing_down_to_one_event_is_still_an_aggregate_so_the_count_is_visible() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(coalesce="key")})
    [message] = aggregate([event(1, key="a"), event(2, key="a")], "o", rules)
    payload = body(message.payload)
    assert (message.type, payload["superseded"]) == ("JOBS_BATCH_PROGRESS", 1)
    assert [e["seq"] for e in payload["events"]] == [2]


def test_without_a_rule_events_with_the_same_key_are_all_kept() -> None:
    [message] = aggregate([event(1, key="a"), event(2, key="a")], "o", AggregationRules())
    assert "superseded" not in body(message.payload)
    assert message.event_count == 2


def test_identical_payloads_stay_separate_unless_grouping_is_turned_on() -> None:
    same = {"text": "disk almost full"}
    events = [event(1, "NOTIFY", data=same), event(2, "NOTIFY", data=same), event(3, "NOTIFY", data={"x": 1})]
    [plain] = aggregate(events, "o", AggregationRules())
    assert len(body(plain.payload)["events"]) == 3
    grouped_rules = AggregationRules(types={"NOTIFY": TypeRule(group_identical=True)})
    [grouped] = aggregate(events, "o", grouped_rules)
    payload = body(grouped.payload)
    assert [e["seq"] for e in payload["events"]] == [1, 3]
    assert (payload["counts"], payload["batch_count"], grouped.event_count) == ([2, 1], 3, 3)


def test_max_group_size_cuts_groups_and_messages_stay_in_first_seq_order() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(max_group_size=2)})
    events = [event(1), event(2), event(3, "JOB_STARTED"), event(4), event(5), event(6)]
    messages = aggregate(events, "o", rules)
    assert [(m.first_seq, m.event_count) for m in messages] == [(1, 2), (3, 1), (4, 2), (6, 1)]
    assert len({m.idem_key for m in messages}) == 4


def test_unbatched_type_travels_alone_inside_aggregate() -> None:
    events = [event(1, "JOB_FAILED"), event(2, "JOB_FAILED")]
    assert [m.event_count for m in aggregate(events, "o", AggregationRules())] == [1, 1]
    assert [m.event_count for m in aggregate(events, "o")] == [2]  # without rules, JOB_FAILED groups like any type


def test_a_message_names_the_seqs_it_absorbed_by_key_and_by_identical_data() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(coalesce="key", group_identical=True)})
    same = {"p": 1}
    events = [event(1, key="a", data=same), event(2, key="b", data=same), event(3, key="a", data={"p": 2})]
    [message] = aggregate(events, "o", rules)
    # 1 is superseded by 3; what is left differs, so nothing is folded.
    assert message.absorbed == (1,)
    events = [event(1, data=same), event(2, key="k", data={"p": 2}), event(3, data=same), event(4, key="k", data=same)]
    [message] = aggregate(events, "o", rules)
    # 2 superseded by 4, and 4 (with what it stands for) folded into 1, as 3 is.
    assert sorted(message.absorbed) == [2, 3, 4]
