from __future__ import annotations

import anyio

from sse_batcher.batcher import StoredMessage
from sse_batcher.batcher.stats import HistogramSnapshot
from sse_batcher.server.app.history import Reading, StatsHistory, quantile
from tests.server.live import LiveServer
from tests.server.sse import subscribed

BOUNDS = (0.01, 0.1, 1.0)


def _histogram(*counts: int) -> HistogramSnapshot:
    return HistogramSnapshot(bounds=BOUNDS, counts=counts, total=0.0, count=sum(counts))


def _message(event_count: int) -> StoredMessage:
    return StoredMessage(1, "T", "T", "s", event_count, b"{}", 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_point_says_what_happened_in_its_second() -> None:
    clock = Clock()
    history = StatsHistory(clock=clock)
    assert history.sample(Reading(10, _histogram(5, 0, 0, 0), _histogram(1, 0, 0, 0))) is None

    history.counting(lambda messages: None)([_message(3), _message(1)])
    clock.now += 2
    point = history.sample(Reading(14, _histogram(5, 10, 0, 0), _histogram(1, 0, 2, 0)))

    assert point is not None
    assert (point.ts, point.events, point.messages, point.rows) == (1002.0, 2.0, 1.0, 2.0)
    assert point.p50_ms is not None and 10 < point.p50_ms < 100  # only the new observations count
    assert point.commit_p99_ms is not None and 100 < point.commit_p99_ms <= 1000
    assert history.points() == [point]


def test_a_quiet_second_has_no_latency_and_the_ring_keeps_only_its_window() -> None:
    clock = Clock()
    history = StatsHistory(seconds=3, clock=clock)
    for _ in range(6):
        history.sample(Reading(0, _histogram(1, 0, 0, 0), _histogram(0, 0, 0, 0)))
        clock.now += 1
    points = history.points()
    assert [p.ts for p in points] == [1003.0, 1004.0, 1005.0]
    assert all(p.p50_ms is None and p.events == 0 for p in points)


def test_quantile_interpolates_and_reads_overflow_as_the_last_bound() -> None:
    assert quantile(BOUNDS, [0, 0, 0, 0], 0.5) is None
    assert quantile(BOUNDS, [10, 0, 0, 0], 0.5) == 0.005
    assert quantile(BOUNDS, [0, 0, 0, 3], 0.5) == 1.0


async def test_the_server_hands_over_its_last_seconds(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client)
        await received.connected.wait()
        for n in range(5):
            answer = await client.post("/api/events?wait=stored", json={"type": "KEPT", "data": {"n": n}})
            assert answer.status_code == 201

        async def points() -> list[dict[str, object]]:
            body = (await client.get("/api/history")).json()
            assert body["seconds"] == 300
            found: list[dict[str, object]] = body["points"]
            return found

        with anyio.fail_after(15):
            while not any(p["events"] and p["p50_ms"] is not None for p in await points()):  # noqa: ASYNC110
                await anyio.sleep(0.2)  # the sampler ticks once a second in the server
        tg.cancel_scope.cancel()
