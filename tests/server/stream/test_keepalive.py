"""Keep-alive: pings to idle streams, and a stream stuck past the send timeout cancelled once."""

from __future__ import annotations

from pathlib import Path

import anyio

from sse_batcher.server.stream.keepalive import KeepAlive
from sse_batcher.server.stream.subscriber import Subscriber
from tests.server.live import make_config, serving


async def test_a_sweep_pings_an_idle_stream_and_cancels_one_stuck_past_the_send_timeout() -> None:
    keepalive = KeepAlive(ping_seconds=1.0, send_timeout_seconds=2.0)
    idle, stuck, sending = (Subscriber(None, None, 10) for _ in range(3))
    for subscriber in (idle, stuck, sending):
        subscriber.scope = anyio.CancelScope()
        subscriber.last_write = 100.0
    stuck.sending_since = 100.0
    sending.sending_since = 101.5  # writing, but not for long: neither pinged nor cancelled
    for _ in range(2):  # a second sweep cancels nothing twice
        keepalive.sweep([idle, stuck, sending], now=102.0)
    assert idle.take() == [b": ping\n\n"]
    assert stuck.timed_out and stuck.scope is not None and stuck.scope.cancel_called
    assert sending.take() == [] and sending.scope is not None and not sending.scope.cancel_called
    assert (keepalive.pings, keepalive.send_timeouts) == (1, 1)


async def test_ping_comments_keep_an_idle_stream_alive(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, ping_seconds=0.05)) as live, live.client() as client:
        async with client.stream("GET", "/events") as response:
            raw = b""
            async for chunk in response.aiter_raw():
                raw += chunk
                if b": ping\n\n" in raw:
                    break
    assert raw.startswith(b"retry: 3000\n\n")
