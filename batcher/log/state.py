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
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import msgspec

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log import _state_sql as state_sql

if TYPE_CHECKING:
    from sse_batcher.batcher.log._pool import StorePool

__all__ = ["Latest", "StateKeeper", "StateSnapshot", "latest_by_key", "read_snapshot"]


class _Keyed(msgspec.Struct, gc=False):
    """What a single event's payload says about its key (everything else is kept as text)."""

    seq: int = 0
    key: str | None = None


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
_GROUP: Final = msgspec.json.Decoder(_Group)
_ENCODE: Final = msgspec.json.Encoder().encode
_KEY_FIELD: Final = b'"key":'


@dataclass(slots=True)
class Latest:
    """One key's latest event in a batch: its message id, seq and type, and where its text comes from.

    ``inner`` is the event inside an aggregate, None for a single event (whose payload is the
    event). The text is made only by :meth:`text`, so a key closed in the same batch, or overtaken
    by a later event, never costs an encoding. Not frozen: a batch makes one per key, and a frozen
    dataclass's ``__init__`` costs about twice as much.
    """

    message_id: int
    seq: int
    message: Message
    inner: _Inner | None

    @property
    def event_type(self) -> str:
        return self.message.event_type

    def text(self) -> str:
        """The whole event as JSON text, ``message_id`` included."""
        message = self.message
        inner = self.inner
        if inner is None:
            return (message.payload[:-1] + b',"message_id":%d}' % self.message_id).decode()
        source, seq, data = message.source, inner.seq, inner.data
        whole = _Whole(message.event_type, source, seq, inner.ts, data, inner.priority, inner.key, self.message_id)
        return _ENCODE(whole).decode()


def latest_by_key(rows: Sequence[Any], by_key: Mapping[str, Message]) -> dict[tuple[str, str], Latest]:
    """Each (source, key) of the stored messages with its latest event.

    ``rows`` are ``(id, idem_key, ...)`` as the write returns them. Between two messages of one
    batcher run (the same ``origin``), the later event is the one with the higher seq, whatever
    the message ids: messages are ordered by their first seq, so an aggregate can be stored before
    another that holds an older event of the same key (a job's ``JOB_COMPLETED`` grouped with an
    earlier job's, then its own ``JOB_PROGRESS`` alone after it). Between runs, seqs restart, and
    the message id decides. A payload without a ``"key":`` is skipped unread, so keyless traffic
    costs a substring search per message.
    """
    latest: dict[tuple[str, str], Latest] = {}
    seen_of = latest.get
    # Newest message first: a key's first sighting is usually its latest event, and the events it
    # overtook cost a dict lookup and a comparison each, never an object.
    for row in reversed(rows):
        message_id = row[0]
        message = by_key[row[1]]
        payload = message.payload
        if _KEY_FIELD not in payload:
            continue
        source, origin = message.source, message.origin
        try:
            if message.type == message.event_type:
                single = _KEYED.decode(payload)
                if single.key is not None:
                    name = (source, single.key)
                    seen = seen_of(name)
                    if seen is None or (single.seq > seen.seq and origin == seen.message.origin):
                        latest[name] = Latest(message_id, single.seq, message, None)
                continue
            group = _GROUP.decode(payload)
        except msgspec.DecodeError:
            continue  # not an event of this wire format (a digest, say): it keys nothing
        for inner in reversed(group.events):
            key = inner.key
            if key is None:
                continue
            name = (source, key)
            seen = seen_of(name)
            # An older message's event is newer only within one run (seqs restart with each).
            if seen is None or (inner.seq > seen.seq and origin == seen.message.origin):
                latest[name] = Latest(message_id, inner.seq, message, inner)
    return latest


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
        latest = latest_by_key(rows, by_key)
        if not latest:
            keys: int = await conn.fetchval(state_sql.KEYS, newest, notify)
        else:
            final = self.final_types
            opened: list[tuple[str, str, Latest]] = []
            closed: list[tuple[str, str, Latest]] = []
            for (source, key), item in latest.items():
                (closed if item.message.event_type in final else opened).append((source, key, item))
            keys = await conn.fetchval(
                state_sql.APPLY,
                [source for source, _, _ in opened],
                [key for _, key, _ in opened],
                [item.message_id for _, _, item in opened],
                [item.seq for _, _, item in opened],
                [item.message.event_type for _, _, item in opened],
                [item.text() for _, _, item in opened],
                # A closed key is deleted: its text is never needed.
                [source for source, _, _ in closed],
                [key for _, key, _ in closed],
                [item.message_id for _, _, item in closed],
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
