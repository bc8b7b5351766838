"""The store's connection pool (``batcher/log/_pool.py``): opened with the schema in place, or a clear
StoreUnavailableError; one retry after a lost connection."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.errors import StoreUnavailableError
from sse_batcher.batcher.log._pool import StorePool
from sse_batcher.batcher.log.store import PostgresStore
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.batcher.log.test_store import message, replay_all
from tests.pg import store_config
from tests.server_process import proxied


async def test_store_reconnects_for_reads_after_postgres_restarts(
    pg_server: EmbeddedPostgres, store: PostgresStore
) -> None:
    await store.write([message(1)])
    await anyio.to_thread.run_sync(pg_server.restart)

    await store.ping()
    assert len(await replay_all(store)) == 1


async def test_start_raises_unavailable_when_postgres_cannot_be_reached(tmp_path: Path) -> None:
    store = PostgresStore(store_config(f"postgresql://postgres@/postgres?host={tmp_path}", timeout_seconds=1))
    with pytest.raises(StoreUnavailableError):
        await store.start()


async def test_two_stores_starting_at_once_both_migrate(dsn: str) -> None:
    stores = [PostgresStore(store_config(dsn)) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for each in stores:
            tg.start_soon(each.start)
    for each in stores:
        await each.aclose()


async def test_expired_connections_that_no_longer_answer_close_without_an_unretrieved_error(dsn: str) -> None:
    # After a lost connection the pool expires every connection; asyncpg closes each expired one in
    # a task nobody awaits. Behind a partition that close times out, and an exception left in such
    # a task reaches asyncio's handler as "Task exception was never retrieved", with a traceback.
    proxy, via = await proxied(dsn)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    pool = await StorePool.open(StoreConfig(dsn=via, pool_size=2, timeout_seconds=1.0))
    try:
        await asyncio.gather(pool.fetch("SELECT pg_sleep(0.2)"), pool.fetch("SELECT pg_sleep(0.2)"))
        proxy.delay(5.0)  # every byte held 5 s: a close cannot finish within the pool's 1 s
        await pool._pool.expire_connections()  # what run() does after a lost connection
        for _ in range(2):
            with contextlib.suppress(StoreUnavailableError):
                await pool.fetch("SELECT 1")
        await asyncio.sleep(1.5)  # the closes time out
        gc.collect()  # an unretrieved exception is reported when its task is collected
        await asyncio.sleep(0)
    finally:
        proxy.heal()
        await pool.close()
        await proxy.aclose()
        loop.set_exception_handler(None)
    assert [c.get("message") for c in reported] == []
