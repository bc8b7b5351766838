"""The SQL of the digester: its two tables and the statements of one pass.

``sse_digest_windows`` holds every window, open (``message_id`` null) or closed (the id of its
digest); ``sse_digest_cursor`` the last ``sse_events`` id the digester has put into windows, per type. Both
change only inside one pass's transaction, under :data:`DIGEST_LOCK`, so a pass is all or nothing:
a process killed mid-pass leaves the state as it was before, and the next pass (on any node) does
the work again.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLOSE",
    "CURSOR",
    "DIGEST_LOCK",
    "DUE",
    "INIT_CURSOR",
    "INGEST",
    "LOAD",
    "OPEN",
    "PRUNE",
    "SCHEMA",
    "SET_CURSOR",
    "TRY_DIGEST_LOCK",
    "UPSERT",
]

_DIGEST_LOCK_KEY: Final = 0x5353_4542_0003
# One node at a time runs a pass; the others skip theirs rather than queue behind it (the one
# holding the lock is doing their work).
TRY_DIGEST_LOCK: Final = f"SELECT pg_try_advisory_xact_lock({_DIGEST_LOCK_KEY})"
# Taken (waiting) by the migration, before any DDL. Why: CREATE INDEX IF NOT EXISTS takes a share lock
# on the table even when the index exists, so a node migrating while another runs a pass (which holds
# the cursor row and then writes the windows) would deadlock with it on INIT_CURSOR.
DIGEST_LOCK: Final = f"SELECT pg_advisory_xact_lock({_DIGEST_LOCK_KEY})"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sse_digest_windows (
    event_type   text   NOT NULL,
    source       text   NOT NULL,
    grp          text   NOT NULL,
    window_start bigint NOT NULL,
    window_end   bigint NOT NULL,
    first_id     bigint NOT NULL,
    last_id      bigint NOT NULL,
    count        bigint NOT NULL,
    items        jsonb  NOT NULL,
    message_id   bigint,
    PRIMARY KEY (event_type, source, grp, window_start)
);
CREATE INDEX IF NOT EXISTS sse_digest_windows_open_idx ON sse_digest_windows (window_end) WHERE message_id IS NULL;
CREATE TABLE IF NOT EXISTS sse_digest_cursor (
    name    text   PRIMARY KEY,
    last_id bigint NOT NULL
);
"""
# A new deployment digests what is stored from now on, not the whole history.
INIT_CURSOR: Final = """
INSERT INTO sse_digest_cursor (name, last_id)
SELECT $1, coalesce(max(id), 0) FROM sse_events
ON CONFLICT (name) DO NOTHING
"""
CURSOR: Final = "SELECT last_id FROM sse_digest_cursor WHERE name = $1"
SET_CURSOR: Final = "UPDATE sse_digest_cursor SET last_id = $2 WHERE name = $1"
# Rows up to the newest committed id ($2, read first): ids commit in id order (the store's write
# lock), so every id <= $2 that will ever exist is visible, and the cursor may move to $2.
INGEST: Final = """
SELECT id, event_type, source, data FROM sse_events
WHERE id > $1 AND id <= $2 AND event_type = ANY($3::text[])
ORDER BY id LIMIT $4
"""
# The windows a page of rows may fall in: those of its types and sources ending after its oldest
# event (closed ones included, so a late event is seen to be late).
LOAD: Final = """
SELECT event_type, source, grp, window_start, window_end, first_id, last_id, count, items, message_id
FROM sse_digest_windows
WHERE event_type = ANY($1::text[]) AND source = ANY($2::text[]) AND window_end > $3
"""
UPSERT: Final = """
INSERT INTO sse_digest_windows (event_type, source, grp, window_start, window_end, first_id, last_id, count, items)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (event_type, source, grp, window_start) DO UPDATE
SET first_id = excluded.first_id, last_id = excluded.last_id, count = excluded.count, items = excluded.items
"""
DUE: Final = """
SELECT event_type, source, grp, window_start, window_end, first_id, last_id, count, items
FROM sse_digest_windows
WHERE message_id IS NULL AND window_end <= $1 AND event_type = ANY($2::text[])
ORDER BY window_end, event_type, source, grp
LIMIT $3
"""
CLOSE: Final = """
UPDATE sse_digest_windows SET message_id = $5
WHERE event_type = $1 AND source = $2 AND grp = $3 AND window_start = $4
"""
OPEN: Final = """
SELECT event_type, source, grp, window_start, window_end, count FROM sse_digest_windows
WHERE message_id IS NULL ORDER BY window_end, event_type, source, grp LIMIT $1
"""
# Closed windows are only needed to recognise late events; a day past the retention is plenty.
PRUNE: Final = "DELETE FROM sse_digest_windows WHERE message_id IS NOT NULL AND window_end < $1"
