"""Limits: the publish token bucket (all or nothing, bounded table), streams per address, stream lifetime."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from httpx_sse import aconnect_sse

from sse_batcher.server.security.guard import Guard
from sse_batcher.server.security.ratelimit import ConnectionCounter, RateLimiter, stream_lifetime
from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import events_of, publish


class Clock:
    """A clock the test moves by hand (the limiter takes any monotonic clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"type": "JOB_STARTED", "source": "w", "data": {"job_id": start + i}} for i in range(n)]


def _guard(live: LiveServer) -> Guard:
    guard: Guard = live.app.state.guard
    return guard


# -- the token bucket --------------------------------------------------------------------------
def test_a_bucket_grants_its_burst_then_says_how_long_until_the_next_request_fits() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 10, clock=clock)
    assert limiter.take("a", 10) == 0
    assert limiter.take("a", 3) == pytest.approx(1.5)  # 3 tokens at 2/s
    clock.now += 1.0
    assert limiter.take("a", 3) == pytest.approx(0.5)  # refused requests were charged nothing
    clock.now += 0.5
    assert limiter.take("a", 3) == 0
    assert limiter.take("b", 10) == 0  # every key has its own bucket


def test_a_request_larger_than_the_burst_can_never_fit() -> None:
    assert RateLimiter(5.0, 10, clock=Clock()).take("a", 11) == math.inf


def test_a_refund_gives_back_what_a_refused_request_was_charged() -> None:
    limiter = RateLimiter(1.0, 10, clock=Clock())
    assert limiter.take("a", 8) == 0
    limiter.give_back("a", 8)
    assert limiter.take("a", 10) == 0


def test_idle_buckets_are_dropped_so_cycling_keys_does_not_grow_the_table() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 10, clock=clock)
    for i in range(10_000):
        clock.now += 0.01
        assert limiter.take(f"10.0.{i // 256}.{i % 256}", 10) == 0
    # A bucket refills in 1 s; only the keys used within the last second can still be held.
    assert len(limiter) <= 101


def test_the_table_never_holds_more_than_max_keys() -> None:
    limiter = RateLimiter(0.001, 10, max_keys=50, clock=Clock())
    for i in range(1000):
        limiter.take(f"k{i}", 1)
    assert len(limiter) == 50


def test_a_released_connection_slot_frees_its_key() -> None:
    counter = ConnectionCounter(2)
    first, second = counter.acquire("a"), counter.acquire("a")
    assert first is not None and second is not None
    assert counter.acquire("a") is None
    first()
    first()  # twice is harmless
    assert counter.count("a") == 1
    second()
    assert len(counter) == 0


def test_a_stream_lifetime_has_up_to_ten_percent_jitter_and_ends_with_its_token() -> None:
    assert stream_lifetime(None) is None
    assert stream_lifetime(100.0, jitter=lambda: 0.0) == 100.0
    assert stream_lifetime(100.0, jitter=lambda: 1.0) == pytest.approx(110.0)
    left = stream_lifetime(100.0, time.time() + 20, jitter=lambda: 0.5)
    assert left is not None and 0 < left <= 20


# -- streams per address -----------------------------------------------------------------------
async def test_streams_per_address_are_capped_and_a_client_disconnect_frees_the_slot(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, max_clients_per_ip=1)) as live, live.client() as client:
        streams = _guard(live).streams
        async with client.stream("GET", "/events") as first:
            assert first.status_code == 200
            await anext(first.aiter_raw())
            refused = await client.get("/events")
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
        await until(lambda: streams.count("127.0.0.1") == 0)
        async with client.stream("GET", "/events") as again:
            assert again.status_code == 200


async def test_a_stream_refused_by_the_hub_gives_its_slot_back(dsn: str, tmp_path: Path) -> None:
    async with (
        serving(make_config(dsn, tmp_path, max_clients=1, max_clients_per_ip=5)) as live,
        live.client() as client,
    ):
        async with client.stream("GET", "/events") as first:
            await anext(first.aiter_raw())
            assert (await client.get("/events")).status_code == 503
            assert _guard(live).streams.count("127.0.0.1") == 1


# -- stream lifetime ---------------------------------------------------------------------------
async def test_capped_streams_end_cleanly_and_resume_by_last_event_id_with_every_event_once(
    dsn: str, tmp_path: Path
) -> None:
    async with serving(make_config(dsn, tmp_path, max_stream_seconds=0.3)) as live, live.client() as client:
        seen: list[int] = []
        ends = 0
        connected, enough = anyio.Event(), anyio.Event()
        changed = anyio.Event()

        async def subscriber() -> None:
            nonlocal ends, changed
            last: str | None = None
            while True:
                headers = {"Last-Event-ID": last} if last else {}
                # A clean end finishes this iteration; a cut-off body would raise and fail the test.
                async with aconnect_sse(client, "GET", "/events", headers=headers) as source:
                    assert source.response.status_code == 200
                    connected.set()
                    async for message in source.aiter_sse():
                        if message.data:
                            seen.extend(event["data"]["job_id"] for event in events_of([message]))
                            last = message.id
                            changed.set()
                ends += 1
                if ends >= 3:
                    enough.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(subscriber)
            await connected.wait()
            sent = 0
            with anyio.fail_after(30):
                while not enough.is_set():
                    await publish(client, _events(5, start=sent))
                    sent += 5
            assert await live.runtime.batcher.flush()
            with anyio.fail_after(10):
                while len(seen) < sent:
                    changed = anyio.Event()
                    await changed.wait()
            tg.cancel_scope.cancel()
    assert seen == list(range(sent))
