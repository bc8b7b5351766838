"""Fan-out under load: a real server process, 200 SSE clients, 20,000 events, nothing lost or doubled.

Slow (about half a minute on two cores): run with ``bash scripts/test.sh -m slow``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sse_batcher.server.client.loadtest import LoadTestOptions, loadtest
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

CLIENTS = 200
EVENTS = 20_000


@pytest.fixture
def server(pg_server: EmbeddedPostgres, tmp_path: Path) -> Iterator[ServerProcess]:
    dsn = pg_server.create_database(f"load_{uuid.uuid4().hex[:12]}")
    # Adaptive sizing emits BATCH_SIZE_ADJUSTED events into the same stream; with it off, every
    # client must receive exactly the published events, which makes "exactly once" a count.
    process = ServerProcess(dsn, tmp_path, demo=False, env={"SSE_DYNAMIC_BATCHING": "false"})
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.timeout(300)
async def test_every_event_reaches_every_client_exactly_once(server: ServerProcess) -> None:
    options = LoadTestOptions(
        url=server.url.rstrip("/"),
        clients=CLIENTS,
        count=EVENTS,
        rate=4000.0,
        duration_seconds=EVENTS / 4000.0,
        batch_per_request=50,
        # Bounds, not expectations: publishing may take this much longer, delivery this long after.
        settle_seconds=120.0,
        progress=False,
    )
    result = await loadtest(options)

    assert (result.accepted, result.rejected) == (EVENTS, 0)
    # Each client counted at least every event, and all of them together exactly clients x events:
    # so each got each event once (a duplicate would need a loss elsewhere to keep the sum).
    assert result.complete_clients == CLIENTS, result
    assert result.delivered_fraction == 1.0, result
    # The sampled clients parse every event: no seq twice, no seq missing between first and last.
    assert (result.duplicates, result.gaps) == (0, 0), result
    async with httpx.AsyncClient(base_url=server.url) as client:
        stats = (await client.get("api/stats")).json()
    assert stats["batcher"]["events_emitted"] == EVENTS
    assert stats["store"]["rows_written"] < EVENTS  # they went out in batches, not one row each
