"""The store's connection pool: opened with the schema in place, one retry after a lost connection.

Every statement the store runs goes through :meth:`StorePool.run`, so they all share one policy:
the store's ``timeout_seconds``, and one more try on a fresh connection when PostgreSQL dropped
the one in use. Closing follows asyncpg's own pool: wait for the connections in use up to the
timeout, then terminate. Apart from ``store.py`` so the store's methods read as what they do to the
log, and this module as how a connection is had and given back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import asyncpg

from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.errors import StoreUnavailableError
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.log import _state_sql as state_sql

__all__ = ["StorePool"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no type hints
    """A pool connection whose close gives up by aborting the connection, never by raising.

    After :meth:`asyncpg.Pool.expire_connections` (see :meth:`StorePool.run`), asyncpg closes each
    expired connection in a task nobody awaits. Behind a partition that close times out, and the
    exception left in the task reaches asyncio's handler as "Task exception was never retrieved",
    with a traceback, once per connection. A connection being closed is gone either way.
    """

    async def close(self, *, timeout: float | None = None) -> None:
        try:
            await super().close(timeout=timeout)
        except Exception as exc:  # whatever stopped the close, the connection is dropped
            logger.debug("closing a store connection failed (%r); aborting it", exc)
            self.terminate()


class StorePool:
    """An asyncpg pool with the store's timeout and retry; :attr:`connected` says how the last call went."""

    def __init__(self, pool: asyncpg.Pool, timeout_seconds: float) -> None:
        self._pool = pool
        self._timeout = timeout_seconds
        self._connected = True

    @classmethod
    async def open(cls, config: StoreConfig) -> StorePool:
        """Open the pool and create the table and indexes if they are missing.

        Raises:
            StoreUnavailableError: PostgreSQL cannot be reached.
        """
        timeout = config.timeout_seconds
        pool: asyncpg.Pool | None = None
        try:
            pool = await asyncpg.create_pool(
                config.dsn,
                # No floor: asyncpg would keep one with a background task that logs a traceback
                # on every reconnect attempt while PostgreSQL is down; connecting on demand (and
                # the retry in run()) is all the store needs.
                min_size=0,
                max_size=config.pool_size,
                timeout=timeout,
                command_timeout=timeout,
                init=sql.init_connection,
                server_settings={"application_name": "sse-batcher"},
                connection_class=_Connection,
            )
            async with pool.acquire(timeout=timeout) as conn, conn.transaction():
                # Two processes starting at once would race on CREATE ... IF NOT EXISTS.
                await conn.execute(sql.MIGRATION_LOCK)
                await conn.execute(sql.SCHEMA)
                await conn.execute(state_sql.SCHEMA)
        except sql.UNAVAILABLE as exc:
            if pool is not None:
                pool.terminate()
            raise StoreUnavailableError(f"cannot open the store: {exc!r}") from exc
        return cls(pool, timeout)

    @property
    def connected(self) -> bool:
        """False once a call failed for want of PostgreSQL, True again after one succeeds."""
        return self._connected

    async def run(self, operation: Callable[[asyncpg.Pool], Awaitable[_T]]) -> _T:
        """Run ``operation`` on the pool; if its connection was lost, run it once more on a fresh one.

        After PostgreSQL restarts, the pool still holds connections the server closed: expiring
        them all makes the retry (and every later call) connect afresh. Every operation of the
        store is idempotent, a write included, so running it twice is safe.

        Raises:
            Exception: one of ``_sql.UNAVAILABLE``, as PostgreSQL or the driver raised it.
        """
        try:
            try:
                result = await operation(self._pool)
            except sql.CONNECTION_LOST as exc:
                logger.info("store connection lost (%r); retrying on a new connection", exc)
                await self._pool.expire_connections()
                result = await operation(self._pool)
        except sql.UNAVAILABLE:
            self._connected = False
            raise
        self._connected = True
        return result

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Run one statement through :meth:`run` and return its rows.

        Raises:
            StoreUnavailableError: PostgreSQL did not answer, or refused the statement.
        """

        async def fetch(pool: asyncpg.Pool) -> list[Any]:
            rows: list[Any] = await pool.fetch(query, *args, timeout=self._timeout)
            return rows

        try:
            return await self.run(fetch)
        except sql.UNAVAILABLE as exc:
            raise StoreUnavailableError(f"store query failed: {exc!r}") from exc

    async def close(self, timeout: float | None = None) -> None:
        """Close the pool, waiting for connections in use up to ``timeout`` (at most the store's), then terminate."""
        self._connected = False
        limit = self._timeout if timeout is None else min(timeout, self._timeout)
        try:
            with anyio.fail_after(limit):
                await self._pool.close()
        except TimeoutError:
            logger.warning("closing the store took over %g s; terminating its connections", limit)
            self._pool.terminate()
        except BaseException:
            self._pool.terminate()
            raise
