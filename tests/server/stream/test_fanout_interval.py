"""The fan-out interval joins bursts without losing or reordering anything, on a real server.

Hypothesis chooses arrival patterns (how many events per publish, and the pause before each,
around the fan-out interval) and a real server process with a 30 ms interval; an asynchronous
subscriber built on the package's own client must receive exactly the published events, once
each, in publish order, in strictly increasing message ids.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_batcher.server.client import StreamEvent, subscribe
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.server_process import ServerProcess

_PATTERN = st.lists(
    st.tuples(st.integers(min_value=1, max_value=40), st.sampled_from([0.0, 0.0, 0.005, 0.02, 0.03, 0.06])),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def server(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    dsn = pg_server.create_database(f"fan_{uuid.uuid4().hex[:12]}")
    process = ServerProcess(
        dsn,
        tmp_path_factory.mktemp("fanout"),
        demo=False,
        env={
            "SSE_FANOUT_INTERVAL_SECONDS": "0.03",
            "SSE_BATCH_TIMEOUT_SECONDS": "0.02",
            "SSE_DYNAMIC_BATCHING": "false",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


class Reader:
    """Reads the stream on a thread until it has seen ``want`` events of ``run``."""

    def __init__(self, url: str, run: str) -> None:
        self.run = run
        self.events: list[StreamEvent] = []
        self.want: int | None = None
        self.done = threading.Event()
        self.ready = threading.Event()
        self._url = url

    def __call__(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(30, read=30)) as client:
            # The stream opens before anything is published: probe once so we know it is live.
            self.ready.set()
            for event in subscribe(self._url + "events", types=["FAN"], client=client):
                if event.data.get("run") != self.run:
                    continue
                self.events.append(event)
                if self.want is not None and len(self.events) >= self.want:
                    self.done.set()
                    return


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=_PATTERN)
def test_any_arrival_pattern_arrives_complete_once_each_in_order(
    server: ServerProcess, pattern: list[tuple[int, float]]
) -> None:
    run = uuid.uuid4().hex
    reader = Reader(server.url, run)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    reader.ready.wait(10)
    time.sleep(0.2)  # let the stream register with the hub before publishing (resume covers no history)
    published = 0
    with httpx.Client(base_url=server.url, timeout=20) as http:
        for size, pause in pattern:
            if pause:
                time.sleep(pause)
            body = [{"type": "FAN", "source": "fan", "data": {"run": run, "n": published + i}} for i in range(size)]
            assert http.post("/api/events", json=body).status_code == 202
            published += size
    reader.want = published
    if len(reader.events) >= published:
        reader.done.set()
    assert reader.done.wait(30), f"got {len(reader.events)} of {published}"
    assert [e.data["n"] for e in reader.events] == list(range(published))
    ids = [e.message_id for e in reader.events]
    assert all(a is not None and b is not None and a <= b for a, b in zip(ids, ids[1:], strict=False))
