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
# its latest event. Open keys are upserted, keys whose latest event is final are deleted, and the
# key count moves by the difference. The keys travel as JSON text, not as arrays: asyncpg encodes
# an array element by element, which cost more than the statement itself (about 0.5 ms for a
# batch's thousand elements against 0.03 ms for the same values as one JSON text).
# - $1-$6: the open keys, column by column (source, key, message_id, seq, event_type as JSON
#   arrays of scalars; the events as a JSON array of the events themselves, so each is stored as
#   the text it arrived as).
# - $7: the closed keys as one JSON object, source -> [key, ...]. Each source's keys are found by
#   one scan of the primary key with ``key = ANY``; a join on (source, key) would be priced as a
#   hash join against a scan of the whole table once it holds a few thousand keys, so a batch's
#   close would cost what the state holds instead of what the batch holds.
# - $8: the batch's newest message id. ``message_id <=`` on both sides makes a retried batch
#   (whose first attempt committed) unable to move a key back to an older event or to close a key
#   a later batch reopened: every row this batch may touch is older than its ids, and every row a
#   later batch wrote is newer.
APPLY: Final = f"""
WITH upserted AS (
    INSERT INTO sse_state AS s (source, key, message_id, seq, event_type, event)
    SELECT u.source, u.key, u.message_id::bigint, u.seq::bigint, u.event_type, u.event::text
    FROM ROWS FROM (json_array_elements_text($1::text::json), json_array_elements_text($2::text::json),
                    json_array_elements_text($3::text::json), json_array_elements_text($4::text::json),
                    json_array_elements_text($5::text::json), json_array_elements($6::text::json))
         AS u(source, key, message_id, seq, event_type, event)
    ON CONFLICT (source, key) DO UPDATE
        SET message_id = EXCLUDED.message_id, seq = EXCLUDED.seq,
            event_type = EXCLUDED.event_type, event = EXCLUDED.event
        WHERE s.message_id <= EXCLUDED.message_id
    RETURNING (xmax = 0) AS fresh
), closed AS (
    DELETE FROM sse_state s
    USING json_each($7::text::json) AS c(source, keys)
    WHERE s.source = c.source
      AND s.key = ANY (ARRAY(SELECT json_array_elements_text(c.keys)))
      AND s.message_id <= $8
    RETURNING 1
)
UPDATE sse_state_meta
SET keys = keys + (SELECT count(*) FROM upserted WHERE fresh) - (SELECT count(*) FROM closed),
    upto_id = greatest(upto_id, $8)
RETURNING keys, (SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', $9::text) WHERE $9::text IS NOT NULL) n)
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
