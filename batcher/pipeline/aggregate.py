"""Group the events of one flush into messages.

Events of one ``(source, type)`` become one aggregate; a group of one stays a plain event. The
aggregate carries every original event, in emit order, so a consumer loses nothing by taking it.
It is compact: the original type (``event_type``) and the source are said once, and each inner
event keeps only ``seq``, ``ts`` and ``data``, plus ``priority`` and ``key`` when set, because type
and source would be about 40 of a typical inner event's 95 bytes, repeated for every event, on the
wire and in every stored row (see bench/RESULTS.md, 'Bytes on the wire per event'). The client
helpers (``frontend/sse-batcher.js``, ``sse_batcher.server.client.unroll``) restore full events, so
a consumer that unrolls sees no difference. Events that must travel alone (critical, or from a
worker with batching off) are never grouped. Per-type rules (``rules.py``), when given, may cut a
group into parts, coalesce it by key (the aggregate then says how many events were
``superseded``) or fold identical payloads (``counts``).

A bound on a message's bytes (``max_message_bytes``), when given, cuts a group into consecutive
parts before any rule acts, so no aggregate's payload exceeds it: a replay page, a client's queue
and a row stay bounded by it. Each event is counted at an upper bound of its encoded size inside an
aggregate, so the cut never needs a second encoding; a single event larger than the bound still
travels, alone.

Hop 4 of the data flow. Next hop: the writer (``writer.py``) stores the messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from sse_batcher.batcher.events import CRITICAL, NORMAL, Event, Message
from sse_batcher.batcher.rules.shaping import shape_group

if TYPE_CHECKING:
    from sse_batcher.batcher.rules.rules import AggregationRules

__all__ = ["aggregate", "aggregate_type", "content_digest", "messages_for"]

_ENCODER: Final = msgspec.json.Encoder()


class _JobRef(msgspec.Struct):
    job_id: Any = msgspec.UNSET


_JOB_DECODER: Final = msgspec.json.Decoder(_JobRef)

# Upper bounds, in bytes, of what an aggregate spends besides each event's data and key: its own
# fields (type, event_type and source are at most 64 characters each, of which none needs escaping)
# and, per inner event, the field names, seq, ts, separators and its entry in ``counts``.
_AGGREGATE_FIELD_BYTES: Final = 512
_INNER_FIELD_BYTES: Final = 128
# A key's character encodes to at most 6 bytes (a \uXXXX escape, or up to 4 of UTF-8).
_KEY_CHAR_BYTES: Final = 6


class _Inner(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """An event inside an aggregate: what is not said once for the whole aggregate."""

    seq: int
    ts: float
    data: msgspec.Raw
    priority: str = NORMAL
    key: str | None = None


class _Aggregate(msgspec.Struct, omit_defaults=True, kw_only=True):
    type: str
    event_type: str
    source: str
    batch_count: int
    superseded: int | msgspec.UnsetType = msgspec.UNSET
    job_ids: list[Any] | msgspec.UnsetType = msgspec.UNSET
    events: list[_Inner]
    counts: list[int] | msgspec.UnsetType = msgspec.UNSET


def aggregate_type(event_type: str) -> str:
    """Name the aggregate of ``event_type``: ``JOB_X`` -> ``JOBS_BATCH_X``, else ``T`` -> ``T_BATCH``."""
    if event_type.startswith("JOB_"):
        return "JOBS_BATCH_" + event_type[4:]
    return event_type + "_BATCH"


def _travels_alone(event: Event) -> bool:
    # A client's idempotency key needs a message of its own: its storage key is the client's.
    return not event.batched or event.priority == CRITICAL or event.idempotency_key is not None


def content_digest(event: Event) -> str:
    """The digest of what a client said in ``event`` (type, source, data, priority, key): a retry's is the same."""
    content = _ENCODER.encode([event.type, event.source, event.data, event.priority, event.key])
    return hashlib.sha256(content).hexdigest()[:32]


def _single(event: Event, origin: str, absorbed: tuple[int, ...] = ()) -> Message:
    key = event.idempotency_key
    if key is None:
        idem_key, payload, digest = f"{origin}:{event.seq}", _ENCODER.encode(event), ""
    else:
        # The key is kept beside the row (its storage key), never in the payload every subscriber
        # reads. "k:" keeps client keys apart from the process-made ones ("<origin>:<seq>").
        idem_key = f"k:{key}"
        payload = _ENCODER.encode(msgspec.structs.replace(event, idempotency_key=None))
        digest = content_digest(event)
    keyed = event.key is not None
    return Message(
        idem_key=idem_key,
        type=event.type,
        event_type=event.type,
        source=event.source,
        event_count=1,
        first_seq=event.seq,
        last_seq=event.seq,
        ts=event.ts,
        payload=payload,
        priority=event.priority,
        origin=origin,
        absorbed=absorbed,
        idem_digest=digest,
        event_keys=(event.key,) if keyed else (),
        event_seqs=(event.seq,) if keyed else (),
    )


def _group(
    events: list[Event],
    origin: str,
    counts: list[int] | None = None,
    superseded: int = 0,
    absorbed: tuple[int, ...] = (),
) -> Message:
    first = events[0]
    count = len(events) if counts is None else sum(counts)
    refs = map(_JOB_DECODER.decode, [e.data for e in events])
    job_ids = [ref.job_id for ref in refs if ref.job_id is not msgspec.UNSET]
    name = aggregate_type(first.type)
    keys = tuple([e.key for e in events])
    keyed = keys.count(None) < len(keys)
    body = _Aggregate(
        type=name,
        event_type=first.type,
        source=first.source,
        batch_count=count,
        superseded=superseded if superseded else msgspec.UNSET,
        # Every event of a group has the group's type and source, and is batched (an event that
        # is not travels alone), so only these fields differ from one event to the next.
        events=[_Inner(e.seq, e.ts, e.data, e.priority, e.key) for e in events],
        job_ids=job_ids if job_ids else msgspec.UNSET,
        counts=msgspec.UNSET if counts is None else counts,
    )
    return Message(
        idem_key=f"{origin}:{first.seq}",
        type=name,
        event_type=first.type,
        source=first.source,
        event_count=count,
        first_seq=first.seq,
        last_seq=events[-1].seq,
        ts=events[-1].ts,
        payload=_ENCODER.encode(body),
        origin=origin,
        absorbed=absorbed,
        event_keys=keys if keyed else (),
        event_seqs=tuple([e.seq for e in events]) if keyed else (),
    )


def aggregate(
    events: Iterable[Event],
    origin: str,
    rules: AggregationRules | None = None,
    *,
    max_message_bytes: int | None = None,
) -> list[Message]:
    """Turn the events of one flush (in seq order) into messages ordered by their first seq.

    ``origin`` is the emitting process's nonce: with the first seq it makes each message's
    idempotency key, so a retried write can never store a message twice. ``rules`` (none by
    default) apply per-type batching, group sizes, key coalescing and identical grouping.
    ``max_message_bytes`` (unbounded by default) bounds each aggregate's payload.
    """
    unbatched = rules.unbatched_types() if rules is not None else frozenset()
    groups: dict[object, list[Event]] = {}
    # The open group of each (source, type). An event that travels alone closes its group: the
    # events after it start a new one, so reading the messages in order keeps the emit order of
    # the (source, type) (a critical event in the middle does not trail the aggregate around it).
    open_groups: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        name = (event.source, event.type)
        if _travels_alone(event) or event.type in unbatched:
            groups[event.seq] = [event]
            open_groups.pop(name, None)
            continue
        group = open_groups.get(name)
        if group is None:
            groups[event.seq] = open_groups[name] = [event]
        else:
            group.append(event)
    if max_message_bytes is not None:
        groups = _cut_by_bytes(groups, max_message_bytes)
    if rules is None or rules.plain:
        return [_single(g[0], origin) if len(g) == 1 else _group(g, origin) for g in groups.values()]
    return _with_rules(groups, origin, rules)


def _cut_by_bytes(groups: dict[object, list[Event]], limit: int) -> dict[object, list[Event]]:
    """Cut each group into consecutive parts whose aggregate stays within ``limit`` bytes."""
    out: dict[object, list[Event]] = {}
    cut = False
    for name, group in groups.items():
        # The cheap check first: data counted twice covers a job id copied into ``job_ids``.
        keys = _KEY_CHAR_BYTES * sum([len(e.key) for e in group if e.key])
        rough = _AGGREGATE_FIELD_BYTES + _INNER_FIELD_BYTES * len(group) + 2 * sum([len(e.data) for e in group]) + keys
        if len(group) == 1 or rough <= limit:
            out[name] = group
            continue
        cut = True
        part: list[Event] = []
        size = _AGGREGATE_FIELD_BYTES
        for event in group:
            job_id = _JOB_DECODER.decode(event.data).job_id
            cost = _INNER_FIELD_BYTES + len(event.data) + _KEY_CHAR_BYTES * len(event.key or "")
            if job_id is not msgspec.UNSET:
                cost += len(_ENCODER.encode(job_id)) + 1
            if part and size + cost > limit:
                out[part[0].seq] = part
                part, size = [], _AGGREGATE_FIELD_BYTES
            part.append(event)
            size += cost
        out[part[0].seq] = part
    # A group cut in parts can interleave with the next group: keep first-seq order.
    return dict(sorted(out.items(), key=lambda item: item[1][0].seq)) if cut else out


def _with_rules(groups: dict[object, list[Event]], origin: str, rules: AggregationRules) -> list[Message]:
    messages: list[Message] = []
    for group in groups.values():
        if len(group) == 1:
            messages.append(_single(group[0], origin))
            continue
        for part in shape_group(group, rules.rule(group[0].type)):
            if len(part.events) == 1 and part.event_count == 1 and not part.superseded:
                messages.append(_single(part.events[0], origin, part.absorbed))
            else:
                messages.append(_group(part.events, origin, part.counts, part.superseded, part.absorbed))
    # Cutting groups into parts can interleave them; the contract is first-seq order.
    messages.sort(key=lambda m: m.first_seq)
    return messages


def messages_for(events: Sequence[Event], origin: str, *, batching: bool) -> list[Message]:
    """Aggregate ``events``, or, with ``batching`` off, make one message per event."""
    return aggregate(events, origin) if batching else [_single(e, origin) for e in events]
