"""What one stream writes (``server/stream/delivery.py``): a lagged subscriber catches up from the store and
rejoins live fan-out with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import anyio

from tests.server.live import make_config, serving
from tests.server.sse import publish, subscribed
from tests.server.stream.test_hub import _BURST, _unread_stream

_ID = re.compile(rb"\nid: (\d+)\n")


async def _read_ids(sock: socket.socket, want: int, timeout: float = 20) -> list[int]:
    loop = asyncio.get_running_loop()
    raw = b""
    with anyio.fail_after(timeout):
        while True:
            chunk = await loop.sock_recv(sock, 1 << 20)
            if not chunk:
                break
            raw += chunk
            ids = [int(x) for x in _ID.findall(raw)]
            if ids and ids[-1] >= want:
                break
    return [int(x) for x in _ID.findall(raw)]


async def test_stalled_client_catches_up_from_the_store_without_slowing_a_fast_one(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, client_queue_size=20, client_send_timeout_seconds=30)
    async with serving(config) as live, live.client() as client, anyio.create_task_group() as tg:
        fast = subscribed(tg, client)
        await fast.connected.wait()
        async with _unread_stream(live) as stalled:
            published = 0
            while live.runtime.hub.statistics().lagged == 0:
                await publish(client, _BURST)
                published += len(_BURST)
                assert published < 100 * len(_BURST), "the stalled client never left live fan-out"
                # The fast client keeps up while the other one is stalled.
                await fast.wait_for(lambda r, n=published: r.count() == n, timeout=5)
            last = fast.ids[-1]
            ids = await _read_ids(stalled, last)
            assert live.runtime.hub.statistics().replayed_messages > 0  # it caught up from the store
        tg.cancel_scope.cancel()
    assert ids == fast.ids  # every message, in order: no gap, no duplicate
