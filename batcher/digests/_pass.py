"""The steps of one digest pass, on the digester's connection, inside the transaction it holds.

1. Ingest: read the stored messages of the digested types after the cursor (``sse_digest_cursor``),
   put their events into windows (:mod:`.windows`), upsert the windows, move the cursor.
2. Close: for every open window whose end is at least the grace past, write its ``T_DIGEST``
   message (:mod:`.message`) into ``sse_events`` as any write does (the store's write lock,
   NOTIFY), and mark the window closed with the message's id.

The digester (:mod:`.digester`) owns what makes a pass safe: the advisory lock, the transaction,
the schedule. Apart from it so each reads as one thing: there, the guarantees; here, the SQL that a
pass runs under them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import msgspec

from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.digests import _sql as dsql
from sse_batcher.batcher.digests.items import oldest_ts_ms
from sse_batcher.batcher.digests.message import digest_idem_key, digest_payload, digest_type
from sse_batcher.batcher.digests.windows import DigestKey, Window, WindowBook
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["DigestPass", "Ingested"]

logger = logging.getLogger(__name__)

# Digests written per pass at most (a backlog after an outage is closed over a few passes).
_CLOSE_PER_PASS: Final = 500
_ITEMS_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingested:
    """What an ingest read: rows, the events digested from them, and the smallest per-type cursor after it."""

    rows: int
    events: int
    cursor: int


class DigestPass:
    """One pass over ``rules`` (digested types only) on ``conn``; the caller holds the transaction and lock."""

    def __init__(self, conn: asyncpg.Connection, rules: Mapping[str, TypeRule], config: StoreConfig) -> None:
        self._conn = conn
        self._rules = rules
        self._types = sorted(rules)
        self._timeout = config.timeout_seconds
        self._page = config.replay_page_size

    async def ingest(self) -> Ingested:
        """Put every row stored since the last pass into windows; one cursor per type.

        Per type, so that a node started with one more digest rule (a rolling deploy) neither
        skips the rows of the new type nor moves the others' cursors past rows it cannot digest.
        """
        conn, timeout = self._conn, self._timeout
        total_rows = total_events = 0
        cursors = []
        for name in self._types:
            cursor = int(await conn.fetchval(dsql.CURSOR, name, timeout=timeout))
            while True:
                head = int(await conn.fetchval(sql.HEAD, timeout=timeout))
                rows = await conn.fetch(dsql.INGEST, cursor, head, [name], self._page, timeout=timeout)
                if rows:
                    total_events += await self._digest_rows(rows)
                    total_rows += len(rows)
                full = len(rows) == self._page
                cursor = rows[-1][0] if full else max(cursor, head)
                await conn.execute(dsql.SET_CURSOR, name, cursor, timeout=timeout)
                if not full:
                    break
            cursors.append(cursor)
        return Ingested(rows=total_rows, events=total_events, cursor=min(cursors, default=0))

    async def _digest_rows(self, rows: list[Any]) -> int:
        conn, timeout = self._conn, self._timeout
        book = WindowBook(self._rules)
        oldest = min(oldest_ts_ms(row[3]) for row in rows)
        sources = sorted({row[2] for row in rows})
        for stored in await conn.fetch(dsql.LOAD, self._types, sources, oldest, timeout=timeout):
            book.load((stored[0], stored[1], stored[2]), _window(stored, closed=stored[9] is not None))
        events = 0
        for message_id, event_type, source, payload in rows:
            try:
                events += book.add(event_type, source, message_id, payload)
            except msgspec.DecodeError:
                # Not this wire format (written by hand into the table?): nothing to digest in it.
                logger.warning("digester skipped message %d: not an event of this wire format", message_id)
        changed = [
            (*key, w.start_ms, w.end_ms, w.first_id, w.last_id, w.count, _items_json(w)) for key, w in book.changed()
        ]
        if changed:
            await conn.executemany(dsql.UPSERT, changed, timeout=timeout)
        return events

    async def close_due(self, ended_by_ms: int) -> list[int]:
        """Write the digest of every open window that ended by ``ended_by_ms``; return their message ids."""
        conn, timeout = self._conn, self._timeout
        due = await conn.fetch(dsql.DUE, ended_by_ms, self._types, _CLOSE_PER_PASS, timeout=timeout)
        if not due:
            return []
        # As every write: the store's write lock before the first id is taken, held to COMMIT.
        await conn.execute(sql.WRITE_LOCK, timeout=timeout)
        ids: list[int] = []
        newest = 0
        for stored in due:
            key: DigestKey = (stored[0], stored[1], stored[2])
            window = _window(stored, closed=False)
            idem_key = digest_idem_key(key, window.start_ms)
            name = digest_type(key[0])
            payload = digest_payload(key, window, self._rules[key[0]])
            inserted = await conn.fetch(sql.INSERT, idem_key, name, name, key[1], payload, 1, timeout=timeout)
            if inserted:
                message_id = int(inserted[0][0])
                newest = message_id
            else:
                found = await conn.fetch(sql.SELECT_BY_KEYS, [idem_key], timeout=timeout)
                message_id = int(found[0][0])
            await conn.execute(dsql.CLOSE, *key, window.start_ms, message_id, timeout=timeout)
            ids.append(message_id)
        if newest:
            await conn.execute(sql.NOTIFY, str(newest), timeout=timeout)
        return ids

    async def prune(self, ended_before_ms: int) -> None:
        """Forget the closed windows that ended before ``ended_before_ms``."""
        await self._conn.execute(dsql.PRUNE, ended_before_ms, timeout=self._timeout)


def _window(row: Any, *, closed: bool) -> Window:
    return Window(
        start_ms=row[3],
        end_ms=row[4],
        first_id=row[5],
        last_id=row[6],
        count=row[7],
        items=[bytes(raw) for raw in _ITEMS_DECODER.decode(row[8])],
        closed=closed,
    )


def _items_json(window: Window) -> bytes:
    return b"[" + b",".join(window.items) + b"]"
