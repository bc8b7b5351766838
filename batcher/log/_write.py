"""Writing one batch: one transaction, ids in commit order, safe to retry, a refused row left out.

- ``ON CONFLICT (idem_key) DO NOTHING`` plus a lookup of the skipped keys makes a retry idempotent:
  after a lost COMMIT answer, the second write stores nothing and returns the ids the first one
  committed.
- Ids are strictly increasing in commit order: the transaction takes the write lock
  (``_sql.WRITE_LOCK``, transaction-scoped and advisory, so it holds across processes) before
  its first insert, so a reader never sees id N+1 before N.
- The latest state (``state.py``) is updated in the same transaction, one upsert per key per
  batch, so it never runs ahead of or behind the log.
- A row PostgreSQL refuses (invalid JSON, ``\\u0000``, bad UTF-8, ...) is left out with its reason,
  in ``WriteResult.rejected``; the rows around it still commit, in order, in the same transaction.
- A client-keyed message whose key is stored already with another content digest is not a retry
  but a conflict: it is left out too, in ``WriteResult.rejected`` with ``conflict`` set.

Apart from ``store.py``, which decides when to write (one at a time, with a retry on a lost
connection) and counts what was written; this module is what one write does in PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.log.state import StateKeeper
from sse_batcher.batcher.protocols import Rejected, WriteResult

__all__ = ["CommittedWrite", "write_batch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommittedWrite:
    """One committed write: its result, the rows it inserted, and the messages now stored (new or found)."""

    result: WriteResult
    inserted: int
    accepted: int
    # Keys the state's bound evicted in this transaction.
    state_displaced: int = 0


async def write_batch(
    conn: asyncpg.Connection, messages: Sequence[Message], state: StateKeeper | None = None
) -> CommittedWrite:
    """Store ``messages`` on ``conn`` in one transaction; row by row if PostgreSQL refuses one.

    ``state``, when given, applies the stored messages to the latest state in that transaction.

    Raises:
        Exception: one of ``_sql.UNAVAILABLE``: nothing of this write was committed.
    """
    keys = list(dict.fromkeys(m.idem_key for m in messages))
    try:
        async with conn.transaction():
            await conn.execute(sql.WRITE_LOCK)
            rows = await conn.fetchmany(sql.INSERT_MESSAGE, [sql.row_args(m) for m in messages])
            inserted = len(rows)
            notify = str(rows[-1][0]) if inserted else None
            if inserted < len(messages):
                rows = await conn.fetch(sql.SELECT_BY_KEYS, keys)
            by_key, conflicts = _match(rows, messages)
            displaced = await _apply_state(conn, state, _kept_rows(rows, by_key), by_key, notify)
    except sql.ROW_ERRORS as exc:
        logger.warning("PostgreSQL refused a row of a batch of %s; writing row by row: %s", len(messages), exc)
        return await _write_isolating(conn, messages, state)
    result = _result(rows, by_key, [], conflicts)
    return CommittedWrite(result, inserted, len(messages) - len(result.rejected), displaced)


def _match(rows: Sequence[Any], messages: Sequence[Message]) -> tuple[dict[str, Message], list[Rejected]]:
    """Each stored key's message, and the messages whose key is stored with other content."""
    digests = {row[1]: row[3] for row in rows}
    conflicts = []
    by_key: dict[str, Message] = {}
    for message in messages:
        stored_digest = digests.get(message.idem_key)
        if message.idem_digest and stored_digest is not None and stored_digest != message.idem_digest:
            reason = "its idempotency key is stored already with other content"
            conflicts.append(Rejected(message=message, reason=reason, conflict=True))
        else:
            by_key.setdefault(message.idem_key, message)
    return by_key, conflicts


def _kept_rows(rows: Sequence[Any], by_key: dict[str, Message]) -> list[Any]:
    """The rows that store a message of this write (a conflicting key's row stores another's)."""
    return [row for row in rows if row[1] in by_key]


def _result(
    rows: Sequence[Any], by_key: dict[str, Message], rejected: list[Rejected], conflicts: list[Rejected]
) -> WriteResult:
    """The stored messages of ``rows`` (one per key), and the rejected ones plus the key conflicts."""
    stored = sql.stored_messages(_kept_rows(rows, by_key), by_key)
    for conflict in conflicts:
        logger.warning("message %s conflicts with the stored one: %s", conflict.message.idem_key, conflict.reason)
    return WriteResult(stored=stored, rejected=[*rejected, *conflicts])


async def _apply_state(
    conn: asyncpg.Connection,
    state: StateKeeper | None,
    rows: Sequence[Any],
    by_key: dict[str, Message],
    notify: str | None,
) -> int:
    """Apply the stored rows to the latest state and send the commit's NOTIFY, in the caller's
    transaction; return the keys evicted.

    With the state on, the state statement carries the NOTIFY, so it costs no round trip of its own.
    """
    if state is None or not state.enabled or not rows:
        if notify is not None:
            await conn.execute(sql.NOTIFY, notify)
        return 0
    return await state.apply(conn, rows, by_key, notify)


async def _write_isolating(
    conn: asyncpg.Connection, messages: Sequence[Message], state: StateKeeper | None
) -> CommittedWrite:
    """Write row by row, each in a savepoint, so a refused row cannot take the others down."""
    accepted: list[Message] = []
    rejected: list[Rejected] = []
    inserted = newest = 0
    async with conn.transaction():
        await conn.execute(sql.WRITE_LOCK)
        for message in messages:
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(sql.INSERT_MESSAGE, *sql.row_args(message))
            except sql.ROW_ERRORS as exc:
                rejected.append(Rejected(message=message, reason=sql.reason(exc)))
                continue
            accepted.append(message)
            if row is not None:
                inserted += 1
                newest = row[0]
        keys = list(dict.fromkeys(m.idem_key for m in accepted))
        rows = await conn.fetch(sql.SELECT_BY_KEYS, keys) if keys else []
        by_key, conflicts = _match(rows, accepted)
        notify = str(newest) if inserted else None
        displaced = await _apply_state(conn, state, _kept_rows(rows, by_key), by_key, notify)
    for refused in rejected:
        logger.warning("PostgreSQL refused message %s: %s", refused.message.idem_key, refused.reason)
    result = _result(rows, by_key, rejected, conflicts)
    return CommittedWrite(result, inserted, len(messages) - len(result.rejected), displaced)
