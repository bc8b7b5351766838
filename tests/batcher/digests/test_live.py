"""The live fan-out filter of ``live = false``."""

from __future__ import annotations

import msgspec

from sse_batcher.batcher import TypeRule
from sse_batcher.batcher.digests.live import quiet_filter
from sse_batcher.batcher.events import Event, StoredMessage
from sse_batcher.batcher.pipeline.aggregate import aggregate


def event(seq: int, ts: float, data: bytes = b"{}", *, priority: str = "normal", type_: str = "ALERT") -> Event:
    return Event(type_, "s", seq, ts, msgspec.Raw(data), priority=priority)


def test_quiet_filter_holds_back_live_false_types_but_not_their_critical_events() -> None:
    is_quiet = quiet_filter({"ALERT": TypeRule(digest_seconds=60, live=False), "B": TypeRule(digest_seconds=60)})
    assert is_quiet is not None

    def stored(e: Event) -> StoredMessage:
        [m] = aggregate([e], "o")
        return StoredMessage(1, m.type, m.event_type, m.source, 1, m.payload, 0.0)

    assert is_quiet(stored(event(1, 1.0)))
    assert not is_quiet(stored(event(2, 1.0, priority="critical")))
    assert not is_quiet(stored(event(3, 1.0, type_="B")))
    assert quiet_filter({"B": TypeRule(digest_seconds=60)}) is None
