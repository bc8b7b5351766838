"""The store's connection pool (``batcher/log/_pool.py``): opened with the schema in place, or a clear
StoreUnavailableError; one retry after a lost connection."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sse_batcher.batcher.errors import StoreUnavailableError
from sse_batcher.batcher.log.store import PostgresStore
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.batcher.log.test_store import message, replay_all
from tests.pg import store_config


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
