"""Digest items: the events inside one stored message, as a digest window counts and keeps them.

A stored message is a single event or an aggregate (``events``, perhaps with ``counts``); a digest
sees through both to the events, leaves the critical ones out (they bypass digests, as they
bypass batching) and gives each the compact form a digest carries, with the id of the message it
came in. Apart from the windows because this is the one place that reads the wire format of a
stored payload; the windows only count and keep what it yields.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from sse_batcher.batcher.events import CRITICAL, NORMAL

__all__ = ["DigestItem", "items_of", "oldest_ts_ms"]

_DECODE_OBJECT: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


class _InnerIn(msgspec.Struct, gc=False):
    seq: int = 0
    ts: float = 0.0
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    priority: str = NORMAL
    key: str | None = None


class _RowIn(msgspec.Struct, gc=False):
    """A stored payload: a single event, or an aggregate with ``events`` (and ``counts``)."""

    seq: int = 0
    ts: float = 0.0
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    priority: str = NORMAL
    key: str | None = None
    events: list[_InnerIn] | None = None
    counts: list[int] | None = None


_ROW_DECODER: Final = msgspec.json.Decoder(_RowIn)


class _Item(msgspec.Struct, omit_defaults=True, gc=False):
    """An event as a digest carries it: the compact inner form plus the message id it came in."""

    id: int
    seq: int
    ts: float
    data: msgspec.Raw
    key: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One stored event of a digested type: its group, time (ms), how many events it stands for, its JSON."""

    group: str
    ts_ms: int
    count: int
    item: bytes


def _group_of(data: msgspec.Raw, group_by: str | None) -> str:
    if group_by is None:
        return ""
    try:
        body = _DECODE_OBJECT.decode(data)
    except msgspec.DecodeError:
        return ""
    value = body.get(group_by) if isinstance(body, dict) else None
    # As PostgreSQL's data->>'field': a string as it is, anything else as its JSON text.
    if value is None:
        return ""
    return value if isinstance(value, str) else _ENCODER.encode(value).decode()


def items_of(message_id: int, payload: bytes, group_by: str | None) -> Iterator[DigestItem]:
    """The events of one stored message of a digested type, critical ones left out, in order.

    Raises:
        msgspec.DecodeError: ``payload`` is not a message of this wire format.
    """
    row = _ROW_DECODER.decode(payload)
    if row.events is None:
        inner = [_InnerIn(row.seq, row.ts, row.data, row.priority, row.key)]
        counts: Sequence[int] = (1,)
    else:
        inner = row.events
        counts = row.counts if row.counts is not None and len(row.counts) == len(inner) else [1] * len(inner)
    for event, count in zip(inner, counts, strict=True):
        if event.priority == CRITICAL:
            continue
        item = _Item(message_id, event.seq, event.ts, event.data, event.key, count)
        yield DigestItem(_group_of(event.data, group_by), round(event.ts * 1000), count, _ENCODER.encode(item))


class _TsOnly(msgspec.Struct, gc=False):
    ts: float = math.inf


class _TsRow(msgspec.Struct, gc=False):
    ts: float = math.inf
    events: list[_TsOnly] | None = None


_TS_DECODER: Final = msgspec.json.Decoder(_TsRow)


def oldest_ts_ms(payload: bytes) -> int:
    """The earliest event time in a stored payload (ms), to know which stored windows to load; 0 if unreadable."""
    try:
        row = _TS_DECODER.decode(payload)
    except msgspec.DecodeError:
        return 0
    oldest = min([row.ts, *(e.ts for e in row.events or ())])
    return 0 if oldest == math.inf else math.floor(oldest * 1000)
