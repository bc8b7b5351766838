"""Digest windows (issue 14): which window an event belongs to, what a window keeps, what it emits.

Pure logic, no I/O: :class:`~sse_batcher.batcher.digests.digester.Digester` reads the stored rows, feeds them through a
:class:`WindowBook` and writes the windows and the digests back, all in PostgreSQL.

- A window belongs to one ``(type, source, group)`` key and spans ``[start, end)`` in epoch
  milliseconds of the events' own ``ts`` (the emit time, wall clock: "every 15 minutes on the
  clock" is a wall-clock idea). ``align = "clock"`` starts windows at multiples of the length;
  ``align = "first"`` starts one at the first event that finds no window open.
- A window keeps ``count``, the message ids it covers (``first_id``, ``last_id``) and at most
  ``max_items`` events (the oldest, or the newest), so closing a 24-hour window reads one row,
  not a day of messages.
- An event whose window was already closed (stored later than the close grace, e.g. from a
  dead-letter file written back after an outage) goes into the next window of its key: late,
  never lost, never counted twice.
- Critical events bypass digests, as they bypass batching.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from sse_batcher.batcher.events import CRITICAL, NORMAL, StoredMessage
from sse_batcher.batcher.rules.rules import TypeRule

__all__ = [
    "DigestItem",
    "DigestKey",
    "Window",
    "WindowBook",
    "digest_idem_key",
    "digest_payload",
    "digest_type",
    "items_of",
    "quiet_filter",
    "window_bounds",
]

# (event_type, source, group); group is "" when the rule has no group_by (or the field is absent).
DigestKey = tuple[str, str, str]

# Group values longer than this are hashed in the idempotency key (a btree entry has a size limit).
_MAX_KEY_GROUP_CHARS: Final = 100
_DECODE_OBJECT: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


def digest_type(event_type: str) -> str:
    """Name the digest of ``event_type``: ``T`` -> ``T_DIGEST``."""
    return event_type + "_DIGEST"


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


@dataclass(slots=True, kw_only=True)
class Window:
    """One digest window as stored in ``sse_digest_windows``; ``dirty`` once changed in this pass."""

    start_ms: int
    end_ms: int
    first_id: int
    last_id: int
    count: int = 0
    items: list[bytes] = field(default_factory=list)
    closed: bool = False
    dirty: bool = False

    def add(self, message_id: int, item: DigestItem, rule: TypeRule) -> None:
        """Count ``item`` in, and keep it if the rule's ``max_items`` and ``keep`` say so."""
        self.first_id = min(self.first_id, message_id)
        self.last_id = max(self.last_id, message_id)
        self.count += item.count
        if len(self.items) < rule.max_items:
            self.items.append(item.item)
        elif rule.keep == "newest":
            del self.items[0]
            self.items.append(item.item)
        self.dirty = True

    @property
    def truncated(self) -> bool:
        """True when the window holds more events than it keeps."""
        return self.count > len(self.items)


def window_bounds(rule: TypeRule, ts_ms: int, windows: Sequence[Window]) -> Window | tuple[int, int]:
    """The open window ``ts_ms`` falls in among one key's ``windows``, or the bounds of a new one.

    A time inside a closed window moves on to that window's end: the event is late, and goes into
    the next window. ``align = "first"`` never lets a new window overlap a later one.
    """
    if rule.digest_seconds is None:
        raise ValueError("window_bounds needs a digest rule")
    length = max(1, round(rule.digest_seconds * 1000))
    t = ts_ms
    while True:
        inside = next((w for w in windows if w.start_ms <= t < w.end_ms), None)
        if inside is None:
            break
        if not inside.closed:
            return inside
        t = inside.end_ms
    if rule.align == "clock":
        start = t - t % length
        return start, start + length
    later = [w.start_ms for w in windows if w.start_ms > t]
    return t, min([t + length, *later])


class WindowBook:
    """The windows one pass of the digester touches, by key; it adds events and says what changed."""

    def __init__(self, rules: Mapping[str, TypeRule]) -> None:
        self._rules = rules
        self._windows: dict[DigestKey, list[Window]] = {}

    def load(self, key: DigestKey, window: Window) -> None:
        """Make a window already stored known (before any :meth:`add`)."""
        self._windows.setdefault(key, []).append(window)

    def add(self, event_type: str, source: str, message_id: int, payload: bytes) -> int:
        """Put the events of one stored message into their windows; return how many were digested.

        Raises:
            msgspec.DecodeError: ``payload`` is not a message of this wire format.
        """
        rule = self._rules[event_type]
        added = 0
        for item in items_of(message_id, payload, rule.group_by):
            windows = self._windows.setdefault((event_type, source, item.group), [])
            found = window_bounds(rule, item.ts_ms, windows)
            if isinstance(found, tuple):
                found = Window(start_ms=found[0], end_ms=found[1], first_id=message_id, last_id=message_id)
                windows.append(found)
            found.add(message_id, item, rule)
            added += item.count
        return added

    def changed(self) -> Iterator[tuple[DigestKey, Window]]:
        """Every window an :meth:`add` changed or opened."""
        for key, windows in self._windows.items():
            for window in windows:
                if window.dirty:
                    yield key, window


class _DigestData(msgspec.Struct, gc=False):
    event_type: str
    group_by: str | None
    group: str | None
    window_start: float
    window_end: float
    count: int
    first_id: int
    last_id: int
    events: list[msgspec.Raw]
    truncated: bool


class _Digest(msgspec.Struct, gc=False):
    type: str
    source: str
    seq: int
    ts: float
    data: _DigestData


def digest_payload(key: DigestKey, window: Window, rule: TypeRule) -> bytes:
    """The ``data:`` JSON of the digest of ``window``: a single event of type ``T_DIGEST``.

    Its ``seq`` is 0 (no worker emitted it; its message id is its identity) and its ``ts`` the
    window's end.
    """
    event_type, source, group = key
    body = _Digest(
        type=digest_type(event_type),
        source=source,
        seq=0,
        ts=window.end_ms / 1000,
        data=_DigestData(
            event_type=event_type,
            group_by=rule.group_by,
            group=group if rule.group_by is not None else None,
            window_start=window.start_ms / 1000,
            window_end=window.end_ms / 1000,
            count=window.count,
            first_id=window.first_id,
            last_id=window.last_id,
            events=[msgspec.Raw(item) for item in window.items],
            truncated=window.truncated,
        ),
    )
    return _ENCODER.encode(body)


def digest_idem_key(key: DigestKey, start_ms: int) -> str:
    """``digest:<type>:<source>:<group>:<window start ms>``: every node computes the same one."""
    event_type, source, group = key
    if len(group) > _MAX_KEY_GROUP_CHARS:
        group = "sha256-" + hashlib.sha256(group.encode()).hexdigest()
    return f"digest:{event_type}:{source}:{group}:{start_ms}"


class _Priority(msgspec.Struct, gc=False):
    priority: str = NORMAL


_PRIORITY_DECODER: Final = msgspec.json.Decoder(_Priority)


def quiet_filter(rules: Mapping[str, TypeRule]) -> Callable[[StoredMessage], bool] | None:
    """A test for messages to keep out of the live fan-out (``live = false``); None when there are none.

    Critical events always go out: they bypass digests. A critical event always travels alone, so
    only single messages are looked into.
    """
    quiet = frozenset(name for name, rule in rules.items() if not rule.live)
    if not quiet:
        return None

    def is_quiet(message: StoredMessage) -> bool:
        if message.event_type not in quiet:
            return False
        if message.type != message.event_type:
            return True  # an aggregate: never holds a critical event
        try:
            return _PRIORITY_DECODER.decode(message.payload).priority != CRITICAL
        except msgspec.DecodeError:
            return True

    return is_quiet
