"""Acknowledged emits, the caller's side (``batcher/pipeline/acks.py``): a worker thread blocks until its
event is committed, and a wait that runs out says whether the events are buffered or kept on disk."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sse_batcher.batcher import AckTimeoutError, BatcherError, PostgresStore
from tests.batcher.pipeline.test_facade import FaultyStore, config, running, stored_rows


async def test_emit_wait_from_a_worker_thread_blocks_until_committed(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05)) as (batcher, _):
        ids = await anyio.to_thread.run_sync(
            lambda: [batcher.emit("T", {"i": i}, source="w", wait=True, timeout=10) for i in range(3)]
        )
        with pytest.raises(BatcherError, match="would block the event loop"):
            batcher.emit("T", {}, source="w", wait=True)
    stored = {row["id"] for row in await stored_rows(dsn)}
    assert set(ids) <= stored


async def test_not_committed_in_time_says_kept(store: PostgresStore, tmp_path: Path) -> None:
    faulty = FaultyStore(store, ["fail"] * 50)
    async with running(faulty, config(tmp_path, max_retries=0, batch_timeout_seconds=0.02)) as (batcher, _):
        with pytest.raises(AckTimeoutError) as caught:
            await batcher.publish([{"type": "T", "data": {}}], timeout=1.0)
    assert caught.value.state == "kept"
    assert caught.value.kept is True
    assert caught.value.ids == [None]


async def test_not_committed_in_time_while_still_buffered_is_not_kept(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=30, leading_edge=False)) as (batcher, _):
        with pytest.raises(AckTimeoutError) as caught:
            await batcher.publish([{"type": "T", "data": {}}], timeout=0.1)
    assert (caught.value.state, caught.value.kept) == ("buffered", False)
