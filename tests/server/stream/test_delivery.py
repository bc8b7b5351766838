"""What one stream writes (``server/stream/delivery.py``): a lagged subscriber catches up from the store and
rejoins live fan-out with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import anyio

from sse_batcher.batcher.events import Message
from sse_batcher.server.stream.hub import Hub
from tests.pg import started_store
from tests.server.live import make_config, serving, until
from tests.server.sse import publish, subscribed
from tests.server.stream.test_hub import _BURST, _unread_stream

_ID = re.compile(rb"\nid: (\d+)\n")


def _message(seq: int, blob: str) -> Message:
    payload = b'{"type":"A","source":"s","seq":%d,"data":{"blob":"%s"}}' % (seq, blob.encode())
    return Message(
        idem_key=f"p:{seq}", type="A", event_type="A", source="s", event_count=1,
        first_seq=seq, last_seq=seq, ts=1.0, payload=payload,
    )  # fmt: skip


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


async def test_replays_hold_no_more_pages_than_the_budget_however_many_clients_stall(dsn: str) -> None:
    blob = "x" * 10_000
    async with started_store(dsn, replay_page_bytes=20_000) as store:
        messages = [_message(i, blob) for i in range(1, 21)]  # 20 rows of 10 KB: ten pages each
        ids = [s.id for s in (await store.write(messages)).stored]
        hub = Hub(store, queue_size=100, max_clients=10, replay_pages=2)
        resume = [anyio.Event() for _ in range(5)]
        got: list[list[int]] = [[] for _ in range(5)]
        peak = 0

        async def stalled_reader(i: int) -> None:
            subscriber = hub.open()
            body = hub.follow(subscriber, 0)
            try:
                async for chunk in body:
                    got[i] += [int(x) for x in _ID.findall(b"\n" + chunk)]
                    if not resume[i].is_set():
                        await resume[i].wait()  # a client that reads nothing for a while
                    if got[i][-1] == ids[-1]:
                        return
            finally:
                await body.aclose()
                hub.release(subscriber)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(stalled_reader, i)
            await until(lambda: hub.statistics().replays_waiting == 3)
            assert hub.statistics().replay_pages_in_use == 2
            for event in resume:
                event.set()
                stats = hub.statistics()
                peak = max(peak, stats.replay_pages_in_use)
        assert peak <= 2 and hub.statistics().replay_pages_in_use == 0
        assert got == [ids] * 5  # every stalled client got everything, in order, once it read


async def test_a_stream_closed_mid_replay_gives_its_page_back_at_once(dsn: str) -> None:
    async with started_store(dsn, replay_page_bytes=20_000) as store:
        # 600 KB: more than one replay chunk, so the stream stops mid-replay holding a page.
        ids = [s.id for s in (await store.write([_message(i, "x" * 10_000) for i in range(1, 61)])).stored]
        hub = Hub(store, queue_size=100, max_clients=10, replay_pages=1)
        stuck = hub.open()
        body = hub.follow(stuck, 0)
        await anext(body)
        assert hub.statistics().replay_pages_in_use == 1
        await body.aclose()  # as when a stuck client is cancelled at the send timeout
        hub.release(stuck)
        assert hub.statistics().replay_pages_in_use == 0
        reader = hub.open()
        got: list[int] = []
        with anyio.fail_after(10):
            async for chunk in hub.follow(reader, 0):
                got += [int(x) for x in _ID.findall(b"\n" + chunk)]
                if got[-1] == ids[-1]:
                    break
        assert got == ids
