"""PostgresStore: the event log on PostgreSQL: ordered, idempotent, durable writes, paged replay, retention.

- :meth:`~PostgresStore.write` stores a batch in one transaction, one write at a time in this
  process; ids commit in id order across processes, a retried write stores nothing twice and a
  row PostgreSQL refuses is left out with its reason (what one write does is in ``_write.py``).
- Payloads go in and out of the ``jsonb`` column as bytes, through a binary codec: no JSON is
  parsed or re-encoded in Python. PostgreSQL normalises ``jsonb`` (key order, spacing), so a
  replayed payload is the same JSON value as the one written, not the same bytes.
- The latest state (``state.py``) is kept in each write's transaction; :meth:`~PostgresStore.snapshot`
  reads it with the id it is consistent with.
- Every statement runs with ``timeout_seconds`` and one retry after a lost connection
  (``_pool.py``), so a PostgreSQL restart costs a caller nothing but the reconnect.

Hop 6 of the data flow. Next hop: nothing is called; every commit NOTIFYs, and each node's log
follower (``follower.py``) reads the committed rows back.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus

from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.errors import BatcherClosedError, StoreError, StoreUnavailableError
from sse_batcher.batcher.events import Message, StoredMessage
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.log._pool import StorePool
from sse_batcher.batcher.log._write import write_batch
from sse_batcher.batcher.log.state import StateKeeper, StateSnapshot, read_snapshot
from sse_batcher.batcher.protocols import WriteResult

__all__ = ["PostgresStore", "StoreStats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """A snapshot of the store's counters since it started."""

    writes: int
    rows_written: int
    rows_skipped_duplicate: int
    rejected_rows: int
    write_errors: int
    replays: int
    retention_deleted: int
    retention_errors: int
    connected: bool
    # The latest state: keys evicted past SSE_STATE_MAX_KEYS, keys that left with retention, and
    # snapshots read.
    state_displaced: int = 0
    state_expired: int = 0
    state_snapshots: int = 0


class PostgresStore(Service):
    """The :class:`~sse_batcher.batcher.protocols.EventStore` on PostgreSQL, through an asyncpg pool.

    Use as ``async with PostgresStore(config) as store:``, or call :meth:`start` and
    :meth:`aclose`. Run :meth:`run_retention` in a task group to delete expired rows.
    """

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._state = State.NEW
        self._pool: StorePool | None = None
        self._write_lock = anyio.Lock()
        self._writes = 0
        self._rows_written = 0
        self._rows_skipped = 0
        self._rejected_rows = 0
        self._write_errors = 0
        self._replays = 0
        self._retention_deleted = 0
        self._retention_errors = 0
        self._state_keeper = StateKeeper(max_keys=config.state_max_keys, final_types=config.state_final_types)

    def __del__(self) -> None:
        if self._state is State.RUNNING:
            warnings.warn(f"Unclosed <{self.__class__.__name__} at {id(self):x}>", ResourceWarning, stacklevel=1)

    async def start(self) -> None:
        """Open the pool and create the table and indexes if they are missing.

        Raises:
            BatcherClosedError: the store was started before.
            StoreUnavailableError: PostgreSQL cannot be reached; ``start()`` may be called again.
        """
        if self._state is not State.NEW:
            raise BatcherClosedError(f"the store is {self._state.value}; start() can be called once")
        self._pool = await StorePool.open(self._config)
        self._state = State.RUNNING

    async def aclose(self, timeout: float | None = None) -> None:
        """Close the pool, waiting for connections in use up to ``timeout`` (at most ``timeout_seconds``),
        then terminate them. A shutdown passes what is left of its bound (behind a partition, the
        driver's reset of a connection whose write was given up waits out the statement timeout).
        Can be called more than once."""
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSED
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout)

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        """Store ``messages`` in one transaction, skipping any already stored (same ``idem_key``).

        ``stored`` lists every message now stored, new or found, in id order; ``rejected`` the
        ones PostgreSQL refused, which a retry can never store.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: connection lost, timeout or any other server failure; the same
                write may be retried and will not store anything twice.
        """
        pool = self._require_pool()
        if not messages:
            return WriteResult(stored=[], rejected=[])
        async with self._write_lock:
            try:
                result = await pool.run(lambda conn_pool: self._write_once(conn_pool, messages))
            except sql.UNAVAILABLE as exc:
                self._write_errors += 1
                raise StoreUnavailableError(f"write of {len(messages)} messages failed: {exc!r}") from exc
        self._writes += 1
        self._rejected_rows += len(result.rejected)
        return result

    async def _write_once(self, pool: asyncpg.Pool, messages: Sequence[Message]) -> WriteResult:
        async with pool.acquire(timeout=self._config.timeout_seconds) as conn:
            written = await write_batch(conn, messages, self._state_keeper)
            # Counted at commit, before the connection goes back: a follower may hand the rows on
            # (and a client see them) while the pool is still resetting the connection.
            self._rows_written += written.inserted
            self._state_keeper.displaced += written.state_displaced
            self._rows_skipped += written.accepted - written.inserted
        return written.result

    async def replay(
        self,
        after_id: int,
        *,
        types: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        page_permit: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> AsyncGenerator[StoredMessage, None]:
        """Yield stored messages with id > ``after_id`` in id order, a page at a time.

        A page is at most ``replay_page_size`` rows and about ``replay_page_bytes`` of payload (its
        last row may cross the bound; a single larger row goes alone), so one replay holds at most
        one page in memory however large the rows. ``types`` filters on the original event type (so
        aggregates match), ``sources`` on the source. A connection is held only while a page is
        fetched, never while the caller consumes it, so a slow consumer cannot starve the pool.
        ``page_permit`` (optional) is entered before each page is fetched and left once the caller
        has taken its last row: a caller bounds the pages in memory across replays with it.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: a page could not be fetched.
        """
        pool = self._require_pool()
        self._replays += 1
        page_size, page_bytes = self._config.replay_page_size, self._config.replay_page_bytes
        limit = page_size
        last_id = after_id
        while True:
            async with page_permit() if page_permit is not None else nullcontext():
                query, args = sql.replay_query(last_id, limit, page_bytes, types, sources)
                rows = await pool.fetch(query, *args)
                size = 0
                for row in rows:
                    size += len(row[5])
                    yield sql.replayed_message(row)
            if not rows or (len(rows) < limit and size < page_bytes):
                return
            last_id, count = rows[-1][0], len(rows)
            del rows  # not held while the next page is fetched
            # Cut by bytes: the next page asks for about as many rows as fitted (twice, for rows that
            # vary), so PostgreSQL does not render hundreds of large rows to send a few.
            limit = min(page_size, 2 * count) if size >= page_bytes else page_size

    async def snapshot(
        self, *, types: Collection[str] | None = None, sources: Collection[str] | None = None
    ) -> StateSnapshot:
        """Return the latest event of every open key whose latest event matches the filters.

        ``upto_id`` is the newest id committed when it was read: the snapshot holds exactly the
        state after every message up to it, so a stream that goes on after ``upto_id`` misses and
        repeats nothing. ``types`` filters on the event type, ``sources`` on the source, both
        applied to each key's latest event.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: PostgreSQL did not answer.
        """
        pool = self._require_pool()

        async def read(conn_pool: asyncpg.Pool) -> StateSnapshot:
            async with conn_pool.acquire(timeout=self._config.timeout_seconds) as conn:
                return await read_snapshot(conn, types, sources)

        try:
            snapshot = await pool.run(read)
        except sql.UNAVAILABLE as exc:
            raise StoreUnavailableError(f"the state snapshot failed: {exc!r}") from exc
        self._state_keeper.snapshots += 1
        return snapshot

    async def bounds(self) -> tuple[int | None, int | None]:
        """Return the first and last stored ids, ``(None, None)`` when empty.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: PostgreSQL did not answer.
        """
        rows = await self._require_pool().fetch(sql.BOUNDS)
        first, last = rows[0]
        return first, last

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Run one statement on the pool and return its rows, with the store's timeout and retry.

        For the few tables that live beside ``sse_events`` (the server's ``sse_nodes``): the
        statement gets what every query here gets, ``timeout_seconds`` and one retry on a fresh
        connection after a lost one, so it must be idempotent.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: PostgreSQL did not answer, or refused the statement.
        """
        return await self._require_pool().fetch(query, *args)

    async def ping(self) -> None:
        """Return when PostgreSQL answers ``SELECT 1`` within ``timeout_seconds``.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: it does not.
        """
        await self._require_pool().fetch("SELECT 1")

    async def delete_expired(self) -> int:
        """Delete the rows older than ``retention_seconds``, oldest first, in batches; return how many.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: PostgreSQL failed; rows deleted by earlier batches stay deleted.
        """
        pool = self._require_pool()
        cutoff = await pool.fetch(sql.EXPIRED_CUTOFF, self._config.retention_seconds)
        if not cutoff:
            return 0
        if self._state_keeper.enabled:  # a key whose latest event is expiring leaves with it
            await self._state_keeper.expire(pool, cutoff[0][0])
        batch = self._config.retention_delete_batch
        total = 0
        while True:
            rows = await pool.fetch(sql.DELETE_UP_TO, cutoff[0][0], batch)
            deleted: int = rows[0][0]
            total += deleted
            self._retention_deleted += deleted
            if deleted < batch:
                return total

    async def run_retention(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Call :meth:`delete_expired` every ``retention_interval_seconds`` until cancelled or closed.

        Run it with ``task_group.start_soon``, or with ``await task_group.start`` to wait for the
        first pass (which runs at once). A failed pass is logged and counted; the next one runs on
        schedule.
        """
        while self._state is State.RUNNING:
            try:
                deleted = await self.delete_expired()
            except BatcherClosedError:
                break
            except StoreError as exc:
                self._retention_errors += 1
                logger.warning("retention pass failed: %s", exc)
            else:
                if deleted:
                    logger.info("retention deleted %s expired messages", deleted)
            task_status.started()
            task_status = anyio.TASK_STATUS_IGNORED
            await anyio.sleep(self._config.retention_interval_seconds)
        task_status.started()

    def statistics(self) -> StoreStats:
        """Return a snapshot of the counters."""
        return StoreStats(
            writes=self._writes,
            rows_written=self._rows_written,
            rows_skipped_duplicate=self._rows_skipped,
            rejected_rows=self._rejected_rows,
            write_errors=self._write_errors,
            replays=self._replays,
            retention_deleted=self._retention_deleted,
            retention_errors=self._retention_errors,
            connected=self._pool is not None and self._pool.connected,
            state_displaced=self._state_keeper.displaced,
            state_expired=self._state_keeper.expired,
            state_snapshots=self._state_keeper.snapshots,
        )

    def _require_pool(self) -> StorePool:
        if self._pool is None:
            raise BatcherClosedError(f"the store is {self._state.value}")
        return self._pool
