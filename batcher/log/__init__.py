"""The log: PostgreSQL as the durable, ordered record of every message, and as the bus.

Enters: batches of messages from the pipeline's writer (:meth:`PostgresStore.write`, one
transaction each, ids under one write lock, ``NOTIFY`` on commit); batches the store could not take
go to the :class:`DeadLetterFile` and are written back, in order, when it answers again.
Leaves: committed rows, read back in id order by each node's :class:`LogFollower` (woken by
``NOTIFY``) and by replays (:meth:`PostgresStore.replay`).
Inside: :mod:`.store` (the store's API and counters), with ``_write`` (what one write does in
PostgreSQL), ``_pool`` (the timeout and retry every statement runs under) and ``_sql`` (the
statements); :mod:`.deadletter` (the dead-letter file and the quarantine of refused rows);
:mod:`.follower` (the log read back in id order); :mod:`.state` (the latest event of every open
key, updated in each write's transaction, read as one consistent snapshot).
Next: the server's hub (``sse_batcher.server.stream``), which the follower feeds.
"""

from __future__ import annotations

from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.log.follower import FollowerStats, LogFollower
from sse_batcher.batcher.log.store import PostgresStore, StoreStats

__all__ = ["DeadLetterFile", "FollowerStats", "LogFollower", "PostgresStore", "StoreStats"]
