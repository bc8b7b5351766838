"""Group the events of one flush into messages.

Events of one ``(source, type)`` become one aggregate; a group of one stays a plain event. The
aggregate carries every original event, in emit order, so a consumer loses nothing by taking it.
Events that must travel alone (critical, or from a worker with batching off) are never grouped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from .events import CRITICAL, Event, Message

__all__ = ["aggregate", "aggregate_type", "messages_for"]

_ENCODER: Final = msgspec.json.Encoder()


class _JobRef(msgspec.Struct):
    job_id: Any = msgspec.UNSET


_JOB_DECODER: Final = msgspec.json.Decoder(_JobRef)


class _Aggregate(msgspec.Struct, omit_defaults=True, kw_only=True):
    type: str
    source: str
    batch_count: int
    job_ids: list[Any] | msgspec.UnsetType = msgspec.UNSET
    events: list[Event]


def aggregate_type(event_type: str) -> str:
    """Name the aggregate of ``event_type``: ``JOB_X`` -> ``JOBS_BATCH_X``, else ``T`` -> ``T_BATCH``."""
    if event_type.startswith("JOB_"):
        return "JOBS_BATCH_" + event_type[4:]
    return event_type + "_BATCH"


def _travels_alone(event: Event) -> bool:
    return not event.batched or event.priority == CRITICAL


def _single(event: Event, origin: str) -> Message:
    return Message(
        idem_key=f"{origin}:{event.seq}",
        type=event.type,
        event_type=event.type,
        source=event.source,
        event_count=1,
        first_seq=event.seq,
        last_seq=event.seq,
        ts=event.ts,
        payload=_ENCODER.encode(event),
        priority=event.priority,
    )


def _group(events: list[Event], origin: str) -> Message:
    first = events[0]
    job_ids = [ref.job_id for ref in map(_JOB_DECODER.decode, (e.data for e in events)) if ref.job_id is not msgspec.UNSET]
    name = aggregate_type(first.type)
    body = _Aggregate(
        type=name,
        source=first.source,
        batch_count=len(events),
        events=events,
        job_ids=job_ids if job_ids else msgspec.UNSET,
    )
    return Message(
        idem_key=f"{origin}:{first.seq}",
        type=name,
        event_type=first.type,
        source=first.source,
        event_count=len(events),
        first_seq=first.seq,
        last_seq=events[-1].seq,
        ts=events[-1].ts,
        payload=_ENCODER.encode(body),
    )


def aggregate(events: Iterable[Event], origin: str) -> list[Message]:
    """Turn the events of one flush (in seq order) into messages ordered by their first seq.

    ``origin`` is the emitting process's nonce: with the first seq it makes each message's
    idempotency key, so a retried write can never store a message twice.
    """
    groups: dict[object, list[Event]] = {}
    for event in events:
        key: object = event.seq if _travels_alone(event) else (event.source, event.type)
        group = groups.get(key)
        if group is None:
            groups[key] = [event]
        else:
            group.append(event)
    return [_single(g[0], origin) if len(g) == 1 else _group(g, origin) for g in groups.values()]


def messages_for(events: Sequence[Event], origin: str, *, batching: bool) -> list[Message]:
    """Aggregate ``events``, or, with ``batching`` off, make one message per event."""
    return aggregate(events, origin) if batching else [_single(e, origin) for e in events]
