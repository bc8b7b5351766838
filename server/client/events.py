"""What a client gets out of one SSE message: the original events, with aggregates unrolled.

Aggregates are compact on the wire (their type and source are said once, see
``batcher/pipeline/aggregate.py``); :func:`unroll` puts ``type`` and ``source`` back, so every
event looks as it would have travelling alone. It is pure (no I/O, no state), apart from the
subscriber that resumes a stream, because tests, benchmarks and the load tool read the wire with
it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

import msgspec

__all__ = ["CONTROL_TYPES", "SNAPSHOT_TYPE", "StreamEvent", "snapshot_events", "stream_events", "unroll"]

# Messages about the stream itself, which carry no event.
CONTROL_TYPES: Final = frozenset({"HISTORY_TRUNCATED"})
# The first message of a stream opened with ``snapshot=1``: the latest event of every open key.
SNAPSHOT_TYPE: Final = "STATE_SNAPSHOT"
_DECODER: Final = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent:
    """One original event, and the id of the message that carried it (the resume point)."""

    message_id: int | None
    type: str
    source: str
    seq: int
    ts: float
    # Left out of the hash, so the event stays hashable although its data is a dict.
    data: dict[str, Any] = field(hash=False)
    priority: str = "normal"
    key: str | None = None
    # True for an event that came in the state snapshot a stream started with (not live).
    snapshot: bool = False


def unroll(payload: bytes | str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full original events of one message's ``data:`` payload, in order.

    An aggregate gives its inner events with ``type`` (its ``event_type``) and ``source`` put
    back; a single event gives itself; a control message (``HISTORY_TRUNCATED``) or anything that
    is not a JSON object gives nothing. Inner events that carry their own ``type`` (the full,
    not compact, form of an aggregate) are taken as they are.

    Raises:
        msgspec.DecodeError: ``payload`` is bytes or text that is not JSON.
    """
    body = _DECODER.decode(payload) if isinstance(payload, bytes | str) else payload
    if not isinstance(body, Mapping):
        return []
    inner = body.get("events")
    if isinstance(inner, list):
        event_type, source = body.get("event_type"), body.get("source")
        return [
            dict(item) if "type" in item else {"type": event_type, "source": source, **item}
            for item in inner
            if isinstance(item, Mapping)
        ]
    if body.get("type") in CONTROL_TYPES:
        return []
    return [dict(body)]


def stream_events(body: Any, message_id: int | None) -> list[StreamEvent]:
    """The :class:`StreamEvent` of each original event in a decoded message body.

    Anything that is not an event of this wire format (a foreign message, a field of the wrong
    type) is left out: there is nothing to hand on.
    """
    events = (_stream_event(event, message_id) for event in unroll(body))
    return [event for event in events if event is not None]


def snapshot_events(body: Any) -> list[StreamEvent]:
    """The events of a ``STATE_SNAPSHOT`` body, each flagged ``snapshot`` with its own ``message_id``."""
    inner = body.get("events") if isinstance(body, Mapping) else None
    if not isinstance(inner, list):
        return []
    events = (
        _stream_event(event, message_id if _is_int(message_id := event.get("message_id")) else None, snapshot=True)
        for event in inner
        if isinstance(event, Mapping)
    )
    return [event for event in events if event is not None]


def _stream_event(event: Mapping[str, Any], message_id: int | None, *, snapshot: bool = False) -> StreamEvent | None:
    type_, source, seq, ts = event.get("type"), event.get("source"), event.get("seq"), event.get("ts")
    data, priority, key = event.get("data"), event.get("priority", "normal"), event.get("key")
    if not (isinstance(type_, str) and isinstance(source, str) and isinstance(data, dict)):
        return None
    if not (_is_int(seq) and (_is_int(ts) or isinstance(ts, float)) and isinstance(priority, str)):
        return None
    return StreamEvent(
        message_id=message_id,
        type=type_,
        source=source,
        seq=seq,
        ts=float(ts),
        data=data,
        priority=priority,
        key=key if isinstance(key, str) else None,
        snapshot=snapshot,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
