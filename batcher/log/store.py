"""The PostgreSQL event store: ordered, idempotent, durable writes and paged replay.

- ``write()`` stores a batch in one transaction. ``ON CONFLICT (idem_key) DO NOTHING`` plus a
  lookup of the skipped keys makes a retry idempotent: after a lost COMMIT answer, the second write
  stores nothing and returns the ids the first one committed.
- Ids are strictly increasing in commit order: writes are serialised in this process (a lock) and
  across processes (a transaction-scoped advisory lock), so a reader never sees id N+1 before N.
- A row PostgreSQL refuses (invalid JSON, ``\\u0000``, bad UTF-8, ...) is left out with its reason,
  in ``WriteResult.rejected``; the rows around it still commit, in order, in the same transaction.
- Payloads go in and out of the ``jsonb`` column as bytes, through a binary codec: no JSON is
  parsed or re-encoded in Python. PostgreSQL normalises ``jsonb`` (key order, spacing), so a
  replayed payload is the same JSON value as the one written, not the same bytes.

Hop 6 of the data flow. Next hop: nothing is called; every commit NOTIFYs, and each node's log
follower (``follower.py``) reads the committed rows back.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import asyncpg
from anyio.abc import TaskStatus

from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.errors import BatcherClosedError, StoreError, StoreUnavailableError
from sse_batcher.batcher.events import Message, StoredMessage
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.protocols import Rejected, WriteResult

__all__ = ["PostgresStore", "StoreStats"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


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


class PostgresStore(Service):
    """The :class:`~sse_batcher.batcher.protocols.EventStore` on PostgreSQL, through an asyncpg pool.

    Use as ``async with PostgresStore(config) as store:``, or call :meth:`start` and
    :meth:`aclose`. Run :meth:`run_retention` in a task group to delete expired rows.
    """

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._state = State.NEW
        self._pool: asyncpg.Pool | None = None
        self._write_lock = anyio.Lock()
        self._writes = 0
        self._rows_written = 0
        self._rows_skipped = 0
        self._rejected_rows = 0
        self._write_errors = 0
        self._replays = 0
        self._retention_deleted = 0
        self._retention_errors = 0
        self._connected = False

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
        timeout = self._config.timeout_seconds
        pool: asyncpg.Pool | None = None
        try:
            pool = await asyncpg.create_pool(
                self._config.dsn,
                # No floor: asyncpg would keep one with a background task that logs a traceback
                # on every reconnect attempt while PostgreSQL is down; connecting on demand (and
                # the retry in _reconnecting) is all this store needs.
                min_size=0,
                max_size=self._config.pool_size,
                timeout=timeout,
                command_timeout=timeout,
                init=sql.init_connection,
                server_settings={"application_name": "sse-batcher"},
            )
            async with pool.acquire(timeout=timeout) as conn, conn.transaction():
                # Two processes starting at once would race on CREATE ... IF NOT EXISTS.
                await conn.execute(sql.MIGRATION_LOCK)
                await conn.execute(sql.SCHEMA)
        except sql.UNAVAILABLE as exc:
            if pool is not None:
                pool.terminate()
            raise StoreUnavailableError(f"cannot open the store: {exc!r}") from exc
        self._pool = pool
        self._state = State.RUNNING
        self._connected = True

    async def aclose(self) -> None:
        """Close the pool, waiting up to ``timeout_seconds`` for connections in use, then terminate.

        Can be called more than once.
        """
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSED
        self._connected = False
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            with anyio.fail_after(self._config.timeout_seconds):
                await pool.close()
        except TimeoutError:
            logger.warning(
                "closing the store took over %s s; terminating its connections", self._config.timeout_seconds
            )
            pool.terminate()
        except BaseException:
            pool.terminate()
            raise

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
                result = await self._reconnecting(lambda: self._write_once(pool, messages))
            except sql.UNAVAILABLE as exc:
                self._write_errors += 1
                self._connected = False
                raise StoreUnavailableError(f"write of {len(messages)} messages failed: {exc!r}") from exc
        self._writes += 1
        self._rejected_rows += len(result.rejected)
        return result

    async def _write_once(self, pool: asyncpg.Pool, messages: Sequence[Message]) -> WriteResult:
        by_key = {m.idem_key: m for m in messages}
        async with pool.acquire(timeout=self._config.timeout_seconds) as conn:
            try:
                async with conn.transaction():
                    await conn.execute(sql.WRITE_LOCK)
                    rows = await conn.fetchmany(sql.INSERT, [sql.row_args(m) for m in messages])
                    inserted = len(rows)
                    if inserted:
                        await conn.execute(sql.NOTIFY, str(rows[-1][0]))
                    if inserted < len(messages):
                        rows = await conn.fetch(sql.SELECT_BY_KEYS, list(by_key))
            except sql.ROW_ERRORS as exc:
                logger.warning("PostgreSQL refused a row of a batch of %s; writing row by row: %s", len(messages), exc)
                return await self._write_isolating(conn, messages)
            # Counted at commit, before the connection goes back: a follower may hand the rows on
            # (and a client see them) while the pool is still resetting the connection.
            self._count_rows(inserted, len(messages))
        return WriteResult(stored=sql.stored_messages(rows, by_key), rejected=[])

    async def _write_isolating(self, conn: asyncpg.Connection, messages: Sequence[Message]) -> WriteResult:
        """Write row by row, each in a savepoint, so a refused row cannot take the others down."""
        by_key: dict[str, Message] = {}
        rejected: list[Rejected] = []
        inserted = newest = 0
        async with conn.transaction():
            await conn.execute(sql.WRITE_LOCK)
            for message in messages:
                try:
                    async with conn.transaction():
                        row = await conn.fetchrow(sql.INSERT, *sql.row_args(message))
                except sql.ROW_ERRORS as exc:
                    rejected.append(Rejected(message=message, reason=sql.reason(exc)))
                    continue
                by_key[message.idem_key] = message
                if row is not None:
                    inserted += 1
                    newest = row[0]
            if inserted:
                await conn.execute(sql.NOTIFY, str(newest))
            rows = await conn.fetch(sql.SELECT_BY_KEYS, list(by_key)) if by_key else []
        self._count_rows(inserted, len(messages) - len(rejected))
        for refused in rejected:
            logger.warning("PostgreSQL refused message %s: %s", refused.message.idem_key, refused.reason)
        return WriteResult(stored=sql.stored_messages(rows, by_key), rejected=rejected)

    def _count_rows(self, inserted: int, accepted: int) -> None:
        self._rows_written += inserted
        self._rows_skipped += accepted - inserted

    async def replay(
        self,
        after_id: int,
        *,
        types: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> AsyncIterator[StoredMessage]:
        """Yield stored messages with id > ``after_id`` in id order, ``replay_page_size`` at a time.

        ``types`` filters on the original event type (so aggregates match), ``sources`` on the
        source. A connection is held only while a page is fetched, never while the caller
        consumes it, so a slow consumer cannot starve the pool.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: a page could not be fetched.
        """
        pool = self._require_pool()
        self._replays += 1
        page_size = self._config.replay_page_size
        last_id = after_id
        while True:
            query, args = sql.replay_query(last_id, page_size, types, sources)
            rows = await self._fetch(pool, query, *args)
            for row in rows:
                yield sql.replayed_message(row)
            if len(rows) < page_size:
                return
            last_id = rows[-1][0]

    async def bounds(self) -> tuple[int | None, int | None]:
        """Return the first and last stored ids, ``(None, None)`` when empty.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: PostgreSQL did not answer.
        """
        rows = await self._fetch(self._require_pool(), sql.BOUNDS)
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
        return await self._fetch(self._require_pool(), query, *args)

    async def ping(self) -> None:
        """Return when PostgreSQL answers ``SELECT 1`` within ``timeout_seconds``.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: it does not.
        """
        await self._fetch(self._require_pool(), "SELECT 1")

    async def delete_expired(self) -> int:
        """Delete the rows older than ``retention_seconds``, oldest first, in batches; return how many.

        Raises:
            BatcherClosedError: the store is not started, or closed.
            StoreUnavailableError: PostgreSQL failed; rows deleted by earlier batches stay deleted.
        """
        pool = self._require_pool()
        cutoff = await self._fetch(pool, sql.EXPIRED_CUTOFF, self._config.retention_seconds)
        if not cutoff:
            return 0
        batch = self._config.retention_delete_batch
        total = 0
        while True:
            rows = await self._fetch(pool, sql.DELETE_UP_TO, cutoff[0][0], batch)
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
            connected=self._connected,
        )

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise BatcherClosedError(f"the store is {self._state.value}")
        return self._pool

    async def _fetch(self, pool: asyncpg.Pool, query: str, *args: Any) -> list[Any]:
        async def fetch() -> list[Any]:
            rows: list[Any] = await pool.fetch(query, *args, timeout=self._config.timeout_seconds)
            return rows

        try:
            return await self._reconnecting(fetch)
        except sql.UNAVAILABLE as exc:
            self._connected = False
            raise StoreUnavailableError(f"store query failed: {exc!r}") from exc

    async def _reconnecting(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``operation``; if its connection was lost, run it once more on a fresh one.

        After PostgreSQL restarts, the pool still holds connections the server closed: expiring
        them all makes the retry (and every later call) connect afresh. Every operation here is
        idempotent, a write included, so running it twice is safe.
        """
        pool = self._require_pool()
        try:
            result = await operation()
        except sql.CONNECTION_LOST as exc:
            logger.info("store connection lost (%r); retrying on a new connection", exc)
            await pool.expire_connections()
            result = await operation()
        self._connected = True
        return result
