"""The ``STATE_SNAPSHOT`` message: the latest event of every open key, and the id the stream goes on from.

A stream opened with ``snapshot=1`` (and no ``Last-Event-ID``) starts with one message::

    id: N
    event: STATE_SNAPSHOT
    data: {"type": "STATE_SNAPSHOT", "upto_id": N, "count": K, "events": [...]}

then continues exactly as a resume after N would: the subscriber joins the hub's live fan-out
first, then the delivery reads the store after N and skips the live ids it already has (see
``delivery.py``), so the ids after the snapshot are exactly the log after N. N is the newest id
committed when the snapshot was read, in the same MVCC snapshot as the state rows
(``sse_batcher.batcher.log.state``), and ids commit in id order, so nothing at or below N is
missing from the snapshot and nothing above N is in it.

The JSON is built by PostgreSQL from the stored event texts; this module only frames it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from sse_batcher.batcher import PostgresStore
from sse_batcher.batcher.log.state import StateSnapshot

__all__ = ["SNAPSHOT_EVENT", "parse_snapshot_flag", "snapshot_message", "state_snapshot"]

SNAPSHOT_EVENT: Final = "STATE_SNAPSHOT"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def parse_snapshot_flag(value: str | None) -> bool:
    """Return the ``snapshot`` query parameter as a bool (absent: False).

    Raises:
        ValueError: not one of 1/0, true/false, yes/no, on/off.
    """
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"snapshot must be 1 or 0, got {value!r:.40}")


def snapshot_message(snapshot: StateSnapshot) -> bytes:
    """The SSE bytes of ``snapshot``: ``id: N``, ``event: STATE_SNAPSHOT`` and one ``data`` line.

    The stored texts are compact JSON (no newline), so one ``data:`` line is exact.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (snapshot.upto_id, SNAPSHOT_EVENT.encode(), snapshot.body)


async def state_snapshot(
    store: PostgresStore, types: Collection[str] | None, sources: Collection[str] | None
) -> tuple[bytes, int]:
    """Read the state and return its SSE message and the id to replay after.

    Raises:
        StoreError: the store could not read it.
    """
    snapshot = await store.snapshot(types=types, sources=sources)
    return snapshot_message(snapshot), snapshot.upto_id
