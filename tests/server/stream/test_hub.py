"""The fan-out: a message encoded once for every client, a burst held for an interval that follows load,
and a peer that accepts nothing timed out."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from sse_batcher.batcher import StoredMessage
from sse_batcher.server.stream.frame import Frame, encode_message
from sse_batcher.server.stream.hub import Hub
from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import publish

_BIG = "x" * 60_000  # under SSE_MAX_EVENT_BYTES
# One request of 15 big events of distinct types: about 1 MB, 15 messages, fills socket buffers fast.
_BURST = [{"type": f"BIG_{i}", "data": {"blob": _BIG}} for i in range(15)]


@asynccontextmanager
async def _unread_stream(live: LiveServer) -> AsyncIterator[socket.socket]:
    """A stream that reads nothing until the test says so (once the socket buffers fill, sends block)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    host, port = live.url.removeprefix("http://").split(":")
    await loop.sock_connect(sock, (host, int(port)))
    await loop.sock_sendall(sock, f"GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    before = live.runtime.hub.statistics().clients_total
    await until(lambda: live.runtime.hub.statistics().clients_total > before)
    try:
        yield sock
    finally:
        sock.close()


def test_each_message_is_encoded_once_and_shared_by_every_client() -> None:
    hub = Hub(store=None, queue_size=10, max_clients=10)  # type: ignore[arg-type]
    clients = [hub.open() for _ in range(3)]
    message = StoredMessage(7, "JOB_DONE", "JOB_DONE", "web", 1, b'{"type":"JOB_DONE"}', 0.0)
    hub.publish([message])
    frames = [client.take()[0] for client in clients]
    assert isinstance(frames[0], Frame)
    assert frames[0].data == encode_message(message) == b'id: 7\nevent: JOB_DONE\ndata: {"type":"JOB_DONE"}\n\n'
    assert all(frame is frames[0] for frame in frames)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_after_a_quiet_spell_a_message_goes_out_at_once_and_a_burst_waits_for_the_interval() -> None:
    clock = FakeClock()
    hub = Hub(store=None, queue_size=100, max_clients=10, fanout_interval_seconds=0.05, clock=clock)  # type: ignore[arg-type]
    sub = hub.open()
    hub.publish([StoredMessage(1, "A", "A", "s", 1, b"{}", 0.0)])
    assert [f.ids for f in sub.take() if isinstance(f, Frame)] == [(1,)]  # idle: at once
    clock.now += 0.01
    hub.publish([StoredMessage(2, "A", "A", "s", 1, b"{}", 0.0)])
    hub.publish([StoredMessage(3, "A", "A", "s", 1, b"{}", 0.0)])
    assert sub.take() == []  # busy: joined, held for the tick
    clock.now += 0.05
    hub._flush_staged(clock.now)  # what Hub.run does when the tick is due
    frames = [f for f in sub.take() if isinstance(f, Frame)]
    assert [f.ids for f in frames] == [(2, 3)] and hub.statistics().fanouts == 2


async def test_a_client_that_accepts_nothing_is_closed_after_the_send_timeout(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, client_queue_size=20, client_send_timeout_seconds=0.3)
    async with serving(config) as live, live.client() as client:
        async with _unread_stream(live) as frozen:
            published = 0
            while live.runtime.hub.statistics().send_timeouts == 0:
                await publish(client, _BURST)
                published += 1
                assert published < 100, "the frozen client was never timed out"
            await until(lambda: live.runtime.hub.clients == 0)
            # The server closed its end: reading returns what was buffered, then hits end of stream.
            loop = asyncio.get_running_loop()
            with anyio.fail_after(10):
                try:
                    while await loop.sock_recv(frozen, 1 << 20):
                        pass
                except ConnectionResetError:
                    pass
        assert live.runtime.hub.statistics().send_timeouts == 1


def test_the_fan_out_interval_stretches_while_ticks_fire_late_and_shrinks_back_when_on_time() -> None:
    hub = Hub(
        store=None,  # type: ignore[arg-type]
        queue_size=10,
        max_clients=10,
        fanout_interval_seconds=0.02,
        fanout_interval_max_seconds=0.1,
    )
    for _ in range(10):
        hub._adapt(lateness=0.5)  # the loop was busy: every tick late
    assert hub.statistics().fanout_interval_seconds == 0.1  # capped
    for _ in range(50):
        hub._adapt(lateness=0.0)
    assert hub.statistics().fanout_interval_seconds == 0.02  # back to the floor, never below
