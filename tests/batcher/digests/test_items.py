"""Digest items: the events a digest sees in a stored message, single or aggregated."""

from __future__ import annotations

import msgspec

from sse_batcher.batcher import AggregationRules, TypeRule
from sse_batcher.batcher.digests.items import items_of
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate


def event(seq: int, ts: float, data: bytes = b"{}", *, priority: str = "normal", type_: str = "ALERT") -> Event:
    return Event(type_, "s", seq, ts, msgspec.Raw(data), priority=priority)


def test_critical_events_and_identical_counts_are_honoured() -> None:
    critical = msgspec.json.encode(event(1, 1.0, priority="critical"))
    assert list(items_of(1, critical, None)) == []
    rules = AggregationRules(types={"ALERT": TypeRule(group_identical=True)})
    [folded] = aggregate([event(i, 1.0, b'{"x":1}') for i in range(3)], "o", rules)
    [item] = items_of(2, folded.payload, None)
    assert item.count == 3
