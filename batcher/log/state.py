"""The latest state: the newest event of every open key, kept in PostgreSQL with the log.

An event's state key is (source, ``key``); events without a ``key`` are not part of it. A write
(``_write.py``) calls :meth:`StateKeeper.apply` inside the batch's own transaction, so the state
never runs ahead of or behind the log, and every node reads the same state:

- one upsert per key per batch, never one per event: the batch's events are walked in id order
  here, in Python, and only each key's latest event reaches PostgreSQL (``_state_sql.APPLY``);
- a key whose latest event has a *final* type (a rule's ``final = true``; by default
  ``JOB_COMPLETED`` and ``JOB_FAILED``) is deleted instead;
- past ``max_keys`` the keys idle longest (smallest latest message id) are evicted and counted
  (``displaced``); retention deletes, with the log rows, the keys whose latest event they were
  (``expired``).

:func:`read_snapshot` reads the state and the id it is consistent with in one statement, the JSON
built by PostgreSQL from the stored texts.

Data flow: beside hop 6 (the store). Read by the server's snapshot (``server/stream/snapshot.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import asyncpg
import msgspec

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log import _state_sql as state_sql

if TYPE_CHECKING:
    from sse_batcher.batcher.log._pool import StorePool

__all__ = ["Latest", "StateKeeper", "StateSnapshot", "event_json", "latest_by_key", "read_snapshot"]


class _Keyed(msgspec.Struct, gc=False):
    """What an event says about its key: a single event's payload, or an aggregate's inner event.

    Everything else is skipped unread; the text of an open key's latest event is made only once
    the walk has found it (:func:`event_json`).
    """

    seq: int = 0
    key: str | None = None


class _KeyedGroup(msgspec.Struct, gc=False):
    events: list[_Keyed]


class _Inner(msgspec.Struct, gc=False):
    seq: int
    ts: float
    data: msgspec.Raw
    priority: str = "normal"
    key: str | None = None


class _Group(msgspec.Struct, gc=False):
    events: list[_Inner]


class _Whole(msgspec.Struct, gc=False, omit_defaults=True):
    """An aggregate's inner event made whole again, as a single event's payload would be."""

    type: str
    source: str
    seq: int
    ts: float
    data: msgspec.Raw
    priority: str = "normal"
    key: str | None = None
    message_id: int = 0


_KEYED: Final = msgspec.json.Decoder(_Keyed)
_KEYED_GROUP: Final = msgspec.json.Decoder(_KeyedGroup)
_GROUP: Final = msgspec.json.Decoder(_Group)
_ENCODE: Final = msgspec.json.Encoder().encode
_KEY_FIELD: Final = b'"key":'

# A key's latest event in a batch: (message id, seq, the message carrying it, the event's index
# among an aggregate's events (-1 for a single event), whether its type is final). A plain tuple:
# a batch makes one per key, and a tuple costs a third of a slotted object's construction. The
# final flag is decided once per message, where every key of the batch would otherwise look it up.
Latest: TypeAlias = tuple[int, int, Message, int, bool]


def _json(value: object) -> str:
    """``value`` as JSON text: the state statement's parameters travel as JSON (see ``APPLY``)."""
    return _ENCODE(value).decode()


def event_json(latest: Latest, groups: dict[str, list[_Inner]]) -> bytes:
    """A key's latest event whole, ``message_id`` included.

    ``groups`` keeps each aggregate's events once decoded, so a batch decodes an aggregate once
    however many of its events are some key's latest.
    """
    message_id, _, message, index, _ = latest
    if index < 0:
        return message.payload[:-1] + b',"message_id":%d}' % message_id
    events = groups.get(message.idem_key)
    if events is None:
        events = groups[message.idem_key] = _GROUP.decode(message.payload).events
    inner = events[index]
    source, type_ = message.source, message.event_type
    return _ENCODE(_Whole(type_, source, inner.seq, inner.ts, inner.data, inner.priority, inner.key, message_id))


def _keys_of(message: Message) -> tuple[tuple[str | None, ...], tuple[int, ...]]:
    """The key and seq of each event ``message``'s payload carries, read from the payload."""
    try:
        if message.type == message.event_type:
            single = _KEYED.decode(message.payload)
            return (single.key,), (single.seq,)
        events = _KEYED_GROUP.decode(message.payload).events
    except msgspec.DecodeError:
        return (), ()  # not an event of this wire format (a digest, say): it keys nothing
    return tuple([e.key for e in events]), tuple([e.seq for e in events])


def latest_by_key(
    rows: Sequence[Any], by_key: Mapping[str, Message], final_types: Collection[str]
) -> dict[str, dict[str, Latest]]:
    """Each source's keys, each with its latest event among the stored messages.

    ``rows`` are ``(id, idem_key, ...)`` as the write returns them. Between two messages of one
    batcher run (the same ``origin``), the later event is the one with the higher seq, whatever
    the message ids: messages are ordered by their first seq, so an aggregate can be stored before
    another that holds an older event of the same key (a job's ``JOB_COMPLETED`` grouped with an
    earlier job's, then its own ``JOB_PROGRESS`` alone after it). Between runs, seqs restart, and
    the message id decides. A message from the aggregator says its events' keys and seqs
    (``Message.event_keys``), so its payload is not decoded; one read back from a file is, unless
    its payload has no ``"key":``, so keyless traffic costs a substring search per message.
    """
    by_source: dict[str, dict[str, Latest]] = {}
    # Newest message first: a key's first sighting is usually its latest event, and the events it
    # overtook cost a dict lookup and a comparison each, never an object.
    for row in reversed(rows):
        message_id = row[0]
        message = by_key[row[1]]
        keys, seqs = message.event_keys, message.event_seqs
        if not keys or len(keys) != len(seqs):
            if _KEY_FIELD not in message.payload:
                continue
            keys, seqs = _keys_of(message)
            if keys.count(None) == len(keys):
                continue  # "key": was in the data, not a key of any event
        latest = by_source.get(message.source)
        if latest is None:
            latest = by_source[message.source] = {}
        seen_of, origin, final = latest.get, message.origin, message.event_type in final_types
        single = message.type == message.event_type
        index = len(keys)
        for key in reversed(keys):
            index -= 1
            if key is None:
                continue
            seq = seqs[index]
            seen = seen_of(key)
            # An older message's event is newer only within one run (seqs restart with each).
            if seen is None or (seq > seen[1] and origin == seen[2].origin):
                latest[key] = (message_id, seq, message, -1 if single else index, final)
    return by_source


class StateKeeper:
    """Applies each committed batch to the state; counts what the bound and retention took out.

    ``max_keys`` 0 turns the state off: nothing is kept and :meth:`apply` does nothing.
    """

    __slots__ = ("displaced", "expired", "final_types", "max_keys", "snapshots")

    def __init__(self, *, max_keys: int, final_types: Collection[str]) -> None:
        self.max_keys = max_keys
        self.final_types = frozenset(final_types)
        self.displaced = 0
        self.expired = 0
        self.snapshots = 0

    @property
    def enabled(self) -> bool:
        return self.max_keys > 0

    async def apply(
        self, conn: asyncpg.Connection, rows: Sequence[Any], by_key: Mapping[str, Message], notify: str | None
    ) -> int:
        """Upsert or close every key of the batch on ``conn`` (inside its transaction); return the keys evicted.

        ``notify`` (the commit's NOTIFY payload, None for none) is sent by the same statement.
        The caller adds the returned number to :attr:`displaced` once the transaction committed.

        Raises:
            ValueError: the state is off or ``rows`` is empty (the caller sends its NOTIFY itself).
        """
        if not self.enabled or not rows:
            raise ValueError("apply() needs the state on and at least one stored row")
        newest = max(row[0] for row in rows)
        by_source = latest_by_key(rows, by_key, self.final_types)
        if not by_source:
            keys: int = await conn.fetchval(state_sql.KEYS, newest, notify)
        else:
            opened: list[tuple[str, str, Latest]] = []
            closed: dict[str, list[str]] = {}
            for source, latest in by_source.items():
                shut = [key for key, item in latest.items() if item[4]]  # deleted: its text is never needed
                if shut:
                    closed[source] = shut
                if len(shut) < len(latest):
                    opened += [(source, key, item) for key, item in latest.items() if not item[4]]
            groups: dict[str, list[_Inner]] = {}
            keys = await conn.fetchval(
                state_sql.APPLY,
                _json([source for source, _, _ in opened]),
                _json([key for _, key, _ in opened]),
                _json([item[0] for _, _, item in opened]),
                _json([item[1] for _, _, item in opened]),
                _json([item[2].event_type for _, _, item in opened]),
                (b"[%s]" % b",".join([event_json(item, groups) for _, _, item in opened])).decode(),
                _json(closed),
                newest,
                notify,
            )
        if keys <= self.max_keys:
            return 0
        evicted: int = await conn.fetchval(state_sql.EVICT, keys - self.max_keys)
        return evicted

    async def expire(self, pool: StorePool, upto_id: int) -> int:
        """Delete the keys whose latest event is at or before ``upto_id`` (retention's cutoff); count them.

        Raises:
            StoreUnavailableError: PostgreSQL failed; nothing was deleted.
        """
        rows = await pool.fetch(state_sql.EXPIRE, upto_id)
        gone: int = rows[0][0]
        self.expired += gone
        return gone


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """The latest event of every open key matching the filters, consistent with ``upto_id``.

    ``body`` is the JSON object ``{"type": "STATE_SNAPSHOT", "upto_id", "count", "events"}``, ready
    to send.
    """

    upto_id: int
    count: int
    body: bytes


async def read_snapshot(
    conn: asyncpg.Connection, types: Collection[str] | None, sources: Collection[str] | None
) -> StateSnapshot:
    """Read the state and the newest committed id in one MVCC snapshot; filters match each key's latest event."""
    row = await conn.fetchrow(
        state_sql.SNAPSHOT,
        None if types is None else list(types),
        None if sources is None else list(sources),
    )
    if row is None:  # pragma: no cover - an aggregate query always returns a row
        raise RuntimeError("the state snapshot returned no row")
    upto_id, count, events = int(row[0]), int(row[1]), bytes(row[2])
    body = b'{"type":"STATE_SNAPSHOT","upto_id":%d,"count":%d,"events":[%s]}' % (upto_id, count, events)
    return StateSnapshot(upto_id, count, body)
