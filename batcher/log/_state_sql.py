"""The SQL of the latest-state table: its schema, the per-batch upsert, the bound, and the snapshot.

Kept apart from ``_sql.py`` (the log's statements) because the state is one concept with its own
table; ``_pool.py`` creates both schemas under the one migration lock.

``sse_state`` holds one row per open key, (source, key): the id of the message that carried the
key's latest event, that event's own type (filters match it) and the event itself as the JSON text
a snapshot sends, ``message_id`` included. ``sse_state_meta`` is one row: how many keys are open
(so the bound costs no ``count(*)``) and the newest id a write stored (a snapshot's ``upto_id``
even when retention has emptied the log).
"""

from __future__ import annotations

from typing import Final

from sse_batcher.batcher.log._sql import CHANNEL

__all__ = ["APPLY", "EVICT", "EXPIRE", "KEYS", "SCHEMA", "SNAPSHOT"]

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sse_state (
    source      text   NOT NULL,
    key         text   NOT NULL,
    message_id  bigint NOT NULL,
    seq         bigint NOT NULL,
    event_type  text   NOT NULL,
    event       text   NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX IF NOT EXISTS sse_state_message_id_idx ON sse_state (message_id);
CREATE TABLE IF NOT EXISTS sse_state_meta (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    keys     bigint  NOT NULL DEFAULT 0,
    upto_id  bigint  NOT NULL DEFAULT 0
);
INSERT INTO sse_state_meta (one) VALUES (true) ON CONFLICT DO NOTHING;
"""

# One statement per batch, inside the batch's transaction: every key the batch touched, once, with
# its latest event. Open keys ($1-$6) are upserted, keys whose latest event is final ($7-$9) are
# deleted, and the key count moves by the difference. ``message_id <=`` on both sides makes a
# retried batch (whose first attempt committed) unable to move a key back to an older event or to
# close a reopened one. The closed keys come as arrays of their own, and each finds its row by one
# probe of the primary key (a scalar subquery per key, which the planner cannot turn into a join):
# as a join, the planner prices an index probe as a disk read and hash-joins the batch's keys
# against a scan of the whole table once it holds a few thousand keys, so a batch's close would
# cost what the state holds instead of what the batch holds. The rows found are deleted by their
# ctid, in the same statement, under the write lock that serialises every write.
APPLY: Final = f"""
WITH upserted AS (
    INSERT INTO sse_state AS s (source, key, message_id, seq, event_type, event)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])
    ON CONFLICT (source, key) DO UPDATE
        SET message_id = EXCLUDED.message_id, seq = EXCLUDED.seq,
            event_type = EXCLUDED.event_type, event = EXCLUDED.event
        WHERE s.message_id <= EXCLUDED.message_id
    RETURNING (xmax = 0) AS fresh
), closed AS (
    DELETE FROM sse_state
    WHERE ctid = ANY (ARRAY(
        SELECT (SELECT s.ctid FROM sse_state s
                WHERE s.source = c.source AND s.key = c.key AND s.message_id <= c.message_id)
        FROM unnest($7::text[], $8::text[], $9::bigint[]) AS c(source, key, message_id)
    ))
    RETURNING 1
)
UPDATE sse_state_meta
SET keys = keys + (SELECT count(*) FROM upserted WHERE fresh) - (SELECT count(*) FROM closed),
    upto_id = greatest(upto_id, $10)
RETURNING keys, (SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', $11::text) WHERE $11::text IS NOT NULL) n)
"""
# A write that touched no key still moves ``upto_id``. Both statements also send the commit's
# NOTIFY (``_sql.NOTIFY``'s, when ``notify`` is not null), so keeping the state costs the write no
# round trip of its own.
KEYS: Final = (
    "UPDATE sse_state_meta SET upto_id = greatest(upto_id, $1) RETURNING keys, "
    f"(SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', $2::text) WHERE $2::text IS NOT NULL) n)"
)
# Past the bound: the keys idle longest leave first. A key's latest message id is its last touch
# (ids commit in id order), so "idle longest" is "smallest message id".
EVICT: Final = """
WITH gone AS (
    DELETE FROM sse_state
    WHERE (source, key) IN (SELECT source, key FROM sse_state ORDER BY message_id LIMIT $1)
    RETURNING 1
)
UPDATE sse_state_meta SET keys = keys - (SELECT count(*) FROM gone) RETURNING (SELECT count(*) FROM gone)
"""
# Retention: a key whose latest event is being deleted from the log leaves with it.
EXPIRE: Final = """
WITH gone AS (DELETE FROM sse_state WHERE message_id <= $1 RETURNING 1)
UPDATE sse_state_meta SET keys = keys - (SELECT count(*) FROM gone) RETURNING (SELECT count(*) FROM gone)
"""
# One statement, so one MVCC snapshot: the newest committed id and the state rows are read at the
# same instant. Ids commit in id order (the write lock), so every id <= that newest one is visible
# and every state change up to it is in the rows; nothing after it is. The JSON array is built
# here, from the stored texts, so no event is decoded or encoded on the way to the client.
SNAPSHOT: Final = """
SELECT greatest(
           coalesce((SELECT max(id) FROM sse_events), 0),
           coalesce((SELECT upto_id FROM sse_state_meta), 0)
       ),
       count(*),
       convert_to(coalesce(string_agg(event, ',' ORDER BY message_id, seq), ''), 'UTF8')
FROM sse_state
WHERE ($1::text[] IS NULL OR event_type = ANY($1::text[]))
  AND ($2::text[] IS NULL OR source = ANY($2::text[]))
"""
