"""Soak: two minutes at 5,000 events/s to 200 clients with the demo workers on (``bench/soak.py``).

Slow: run with ``bash scripts/test.sh -m slow``. The properties, not the speed, are asserted:
every event reaches every client exactly once and is stored once, the server's RSS after the
warm-up stays within 10 %, and its file descriptors do not grow.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest

from bench.soak import soak
from server.embedded_pg import EmbeddedPostgres

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
async def test_two_minutes_of_load_keep_memory_and_descriptors_flat_and_deliver_exactly_once(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = pg_server.create_database(f"soak_{uuid.uuid4().hex[:12]}")
    report = await anyio.to_thread.run_sync(lambda: soak(dsn, tmp_path, minutes=2.0))
    assert report.accepted == report.published > 0, report
    assert report.complete_clients == report.clients, report
    assert report.id_regressions == 0, report
    assert (report.sampled_duplicates, report.sampled_missing) == (0, 0), report
    assert report.stored_events == report.stored_distinct == report.accepted, report
    assert report.rss_growth <= 0.10, report
    assert report.fds_end <= report.fds_warm_max, report
