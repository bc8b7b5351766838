"""The digest message: its payload and its idempotency key."""

from __future__ import annotations

import msgspec

from sse_batcher.batcher import TypeRule
from sse_batcher.batcher.digests.message import digest_idem_key, digest_payload
from sse_batcher.batcher.digests.windows import Window


def test_the_digest_payload_is_a_single_event_of_type_t_digest() -> None:
    rule = TypeRule(digest_seconds=60, max_items=1, group_by="u")
    window = Window(start_ms=60_000, end_ms=120_000, first_id=3, last_id=9, count=2, items=[b'{"id":3}'])
    body = msgspec.json.decode(digest_payload(("ALERT", "s", "x"), window, rule))
    assert body["type"] == "ALERT_DIGEST" and body["source"] == "s" and body["ts"] == 120.0
    assert body["data"] == {
        "event_type": "ALERT",
        "group_by": "u",
        "group": "x",
        "window_start": 60.0,
        "window_end": 120.0,
        "count": 2,
        "first_id": 3,
        "last_id": 9,
        "events": [{"id": 3}],
        "truncated": True,
    }
    assert digest_idem_key(("ALERT", "s", "x"), 60_000) == "digest:ALERT:s:x:60000"
    assert len(digest_idem_key(("ALERT", "s", "x" * 500), 0)) < 120
