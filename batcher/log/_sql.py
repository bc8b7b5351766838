"""The SQL of the PostgreSQL store, its row conversions, and how its errors are classified.

Kept apart from ``store.py`` so the statements can be read (and reviewed) in one place.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

import asyncpg

from sse_batcher.batcher.events import Message, StoredMessage

__all__ = [
    "BOUNDS",
    "CHANNEL",
    "CONNECTION_LOST",
    "DELETE_UP_TO",
    "EXPIRED_CUTOFF",
    "FOLLOW",
    "HEAD",
    "INSERT",
    "INSERT_MESSAGE",
    "MIGRATION_LOCK",
    "NOTIFY",
    "ROW_ERRORS",
    "SCHEMA",
    "SELECT_BY_KEYS",
    "UNAVAILABLE",
    "WRITE_LOCK",
    "decode_jsonb",
    "encode_jsonb",
    "init_connection",
    "reason",
    "replay_query",
    "replayed_message",
    "row_args",
    "stored_messages",
]

# Arbitrary keys for pg_advisory_xact_lock, fixed so every process agrees on them.
_MIGRATION_LOCK_KEY: Final = 0x5353_4542_0001
_WRITE_LOCK_KEY: Final = 0x5353_4542_0002

MIGRATION_LOCK: Final = f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"
# Taken by every write transaction, before its first insert takes an id from the sequence. Why: a
# plain sequence hands out ids at insert time but transactions commit in whatever order they
# finish, so with two writers (two processes, two hosts) id 11 can commit before id 10; a log
# follower reading "id > 9" between the two commits would see 11, move on, and skip 10 for good.
# Holding this lock from before nextval() until COMMIT serialises the writers, so ids commit in id
# order and the committed ids are always a prefix of the assigned ones (gaps from rolled-back
# writes aside, which nobody can skip past because nothing is ever committed into them).
WRITE_LOCK: Final = f"SELECT pg_advisory_xact_lock({_WRITE_LOCK_KEY})"
# Every write transaction NOTIFYs this channel with its newest id (never the data: payloads stop at
# 8,000 bytes). PostgreSQL delivers a notification only when its transaction commits, so a node
# that hears it can read the rows at once; the log followers of every node LISTEN here.
CHANNEL: Final = "sse_events"
NOTIFY: Final = f"SELECT pg_notify('{CHANNEL}', $1::text)"
# What a log follower reads: the rows after the last id it handed on, one page at a time.
FOLLOW: Final = (
    "SELECT id, type, event_type, source, event_count, data, created_at FROM sse_events "
    "WHERE id > $1 ORDER BY id LIMIT $2"
)
HEAD: Final = "SELECT coalesce(max(id), 0) FROM sse_events"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sse_events (
    id          bigserial   PRIMARY KEY,
    idem_key    text        NOT NULL UNIQUE,
    type        text        NOT NULL,
    event_type  text        NOT NULL,
    source      text        NOT NULL,
    data        jsonb       NOT NULL,
    event_count int         NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    idem_digest text
);
ALTER TABLE sse_events ADD COLUMN IF NOT EXISTS idem_digest text;
CREATE INDEX IF NOT EXISTS sse_events_created_at_idx ON sse_events (created_at);
CREATE INDEX IF NOT EXISTS sse_events_event_type_id_idx ON sse_events (event_type, id);
CREATE INDEX IF NOT EXISTS sse_events_source_id_idx ON sse_events (source, id);
"""

INSERT: Final = """
INSERT INTO sse_events (idem_key, type, event_type, source, data, event_count)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (idem_key) DO NOTHING
RETURNING id, idem_key, created_at
"""
# A client-keyed message carries the digest of its content, stored beside its key: a write that
# finds the key taken compares them (same: a retry; other: a conflict).
INSERT_MESSAGE: Final = """
INSERT INTO sse_events (idem_key, type, event_type, source, data, event_count, idem_digest)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (idem_key) DO NOTHING
RETURNING id, idem_key, created_at, idem_digest
"""
SELECT_BY_KEYS: Final = (
    "SELECT id, idem_key, created_at, idem_digest FROM sse_events WHERE idem_key = ANY($1::text[]) ORDER BY id"
)
BOUNDS: Final = "SELECT min(id), max(id) FROM sse_events"
# Retention deletes a prefix of the id order (everything up to the newest expired row), so the
# rows left are always one unbroken run: "the first id still available" means what it says.
EXPIRED_CUTOFF: Final = """
SELECT id FROM sse_events
WHERE created_at < now() - make_interval(secs => $1)
ORDER BY created_at DESC LIMIT 1
"""
DELETE_UP_TO: Final = """
WITH deleted AS (
    DELETE FROM sse_events
    WHERE id IN (SELECT id FROM sse_events WHERE id <= $1 ORDER BY id LIMIT $2)
    RETURNING 1
)
SELECT count(*) FROM deleted
"""

_REPLAY_COLUMNS: Final = "id, type, event_type, source, event_count, data, created_at"


def replay_query(
    after_id: int, limit: int, max_bytes: int, types: Collection[str] | None, sources: Collection[str] | None
) -> tuple[str, list[Any]]:
    """Return one keyset-paginated replay statement and its arguments: a page of at most ``limit`` rows and
    about ``max_bytes`` of payload.

    A row is in the page while the payloads before it (``octet_length`` of the jsonb text, what the
    stream sends) add up to less than ``max_bytes``: a page holds at most ``max_bytes`` plus its
    last row, and always its first row, so a row larger than the bound still goes out alone. The
    running sum is a window over the rows the index scan yields, so PostgreSQL reads no more than
    ``limit`` of them.

    One statement per filter combination (rather than ``$n IS NULL OR ...``) lets the planner pick
    the (event_type, id) or (source, id) index for a selective filter.
    """
    args: list[Any] = [after_id, limit, max_bytes]
    where = ["id > $1"]
    if types is not None:
        args.append(list(types))
        where.append(f"event_type = ANY(${len(args)}::text[])")
    if sources is not None:
        args.append(list(sources))
        where.append(f"source = ANY(${len(args)}::text[])")
    before = "sum(octet_length(data::text)) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    return (
        f"SELECT {_REPLAY_COLUMNS} FROM ("
        f"SELECT {_REPLAY_COLUMNS}, coalesce({before}, 0) AS before FROM sse_events "
        f"WHERE {' AND '.join(where)} ORDER BY id LIMIT $2"
        ") AS page WHERE before < $3 ORDER BY id",
        args,
    )


def encode_jsonb(payload: bytes) -> bytes:
    """Binary jsonb input is a version byte (1) and the JSON text: the payload is sent as is."""
    return b"\x01" + payload


def decode_jsonb(data: bytes) -> bytes:
    """Binary jsonb output is a version byte and the JSON text: keep the text, never parse it."""
    return data[1:]


async def init_connection(conn: asyncpg.Connection) -> None:
    """Make every pool connection exchange ``jsonb`` as raw bytes."""
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=encode_jsonb, decoder=decode_jsonb, format="binary")


def row_args(message: Message) -> tuple[Any, ...]:
    """The arguments of :data:`INSERT_MESSAGE` for ``message``."""
    return (
        message.idem_key, message.type, message.event_type, message.source, message.payload, message.event_count,
        message.idem_digest or None,
    )  # fmt: skip


def stored_messages(rows: Sequence[Any], by_key: dict[str, Message]) -> list[StoredMessage]:
    """Join the ``(id, idem_key, created_at, ...)`` rows, in id order, with the messages they store."""
    return [
        StoredMessage(
            id=row_id,
            type=message.type,
            event_type=message.event_type,
            source=message.source,
            event_count=message.event_count,
            payload=message.payload,
            created_at=created_at.timestamp(),
            idem_key=key,
        )
        for row_id, key, created_at, *_ in rows
        for message in (by_key[key],)
    ]


def replayed_message(row: Any) -> StoredMessage:
    """A row of :func:`replay_query` as a message (``payload`` is the jsonb text, as bytes)."""
    return StoredMessage(
        id=row[0],
        type=row[1],
        event_type=row[2],
        source=row[3],
        event_count=row[4],
        payload=row[5],
        created_at=row[6].timestamp(),
    )


# PostgreSQL refused the row itself: retrying it can never succeed. DataError covers class 22
# (invalid JSON, \u0000 in jsonb, NUL bytes or bad UTF-8 in text) and arguments asyncpg cannot
# encode; 23 is a constraint other than our ON CONFLICT key; 54 an index row too large.
ROW_ERRORS: Final = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
# The connection died (server restart, admin shutdown, socket closed): a fresh connection may
# succeed at once.
CONNECTION_LOST: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    OSError,
)
# Anything else the server or the driver can raise is treated as retryable: the batcher then keeps
# the batch in its dead-letter file instead of dropping it, and nothing is lost.
UNAVAILABLE: Final = (
    *CONNECTION_LOST,
    asyncpg.PostgresError,
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)


def reason(exc: BaseException) -> str:
    """Describe a refusal for the quarantine file: class, SQLSTATE and PostgreSQL's message."""
    sqlstate = getattr(exc, "sqlstate", None)
    code = f" [{sqlstate}]" if sqlstate else ""
    return f"{type(exc).__name__}{code}: {exc}"
