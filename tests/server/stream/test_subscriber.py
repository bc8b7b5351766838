"""A subscriber (``server/stream/subscriber.py``): its queue is bounded, and one that would overflow it lags,
keeping what it had."""

from __future__ import annotations

from sse_batcher.batcher import StoredMessage
from sse_batcher.server.stream.frame import Frame
from sse_batcher.server.stream.hub import Hub


def test_a_full_queue_lags_the_subscriber_out_of_live_fan_out() -> None:
    hub = Hub(store=None, queue_size=2, max_clients=10)  # type: ignore[arg-type]
    slow, fast = hub.open(), hub.open()
    messages = [StoredMessage(i, "A", "A", "s", 1, b"{}", 0.0) for i in range(1, 4)]
    hub.publish(messages[:2])
    fast.take()
    hub.publish(messages[2:])
    assert slow.lagged and not fast.lagged
    assert [f.ids for f in fast.take() if isinstance(f, Frame)] == [(3,)]
    hub.publish([StoredMessage(4, "A", "A", "s", 1, b"{}", 0.0)])
    assert [f.ids for f in slow.take() if isinstance(f, Frame)] == [(1, 2)]  # what it had stays; nothing after


def test_a_live_subscriber_that_lags_with_only_a_ping_queued_resumes_before_its_first_live_message() -> None:
    hub = Hub(store=None, queue_size=2, max_clients=10)  # type: ignore[arg-type]
    live = hub.open()
    live.ping(b": ping\n\n")
    hub.publish([StoredMessage(i, "A", "A", "s", 1, b"{}", 0.0) for i in range(500, 503)])
    assert live.lagged
    # It catches up from just before the first message it missed, not from the start of the history.
    assert live.last_id == 499
