"""Room (``batcher/pipeline/room.py``): events and bytes counted against their limits, waiters of
both kinds woken by room and by close."""

from __future__ import annotations

import threading

import anyio
import pytest

from sse_batcher.batcher.errors import BatcherClosedError, BufferFullError
from sse_batcher.batcher.pipeline.room import Room


def test_room_is_bounded_in_events_and_in_bytes() -> None:
    room = Room(max_events=3, max_bytes=10)
    with room.lock:
        room.wait(2, 8, None)
        room.add(2, 8)
        with pytest.raises(BufferFullError, match="bytes"):
            room.wait(1, 3, None)
        room.wait(1, 2, None)
        room.add(1, 2)
        with pytest.raises(BufferFullError, match="events"):
            room.wait(1, 0, None)
    assert room.rejected == 2


def test_close_wakes_a_waiting_thread_with_batcher_closed() -> None:
    room = Room(max_events=1, max_bytes=100)
    with room.lock:
        room.add(1, 1)
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            with room.lock:
                room.wait(1, 1, 60)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    while room.waiting == 0:
        thread.join(0.001)
    room.close()
    thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], BatcherClosedError)
    with room.lock, pytest.raises(BatcherClosedError):
        room.wait(0, 0, None)  # once closed, nothing fits, not even nothing


async def test_release_wakes_a_coroutine_and_close_wakes_the_next_with_batcher_closed() -> None:
    room = Room(max_events=1, max_bytes=100)
    with room.lock:
        room.add(1, 5)
    woke: list[str] = []

    async def waiter() -> None:
        try:
            await room.wait_async(1, 5)
            woke.append("room")
        except BatcherClosedError:
            woke.append("closed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        with room.lock:
            room.release(1, 5)
    assert woke == ["room"]
    with room.lock:
        room.add(1, 5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        room.close()
    assert woke == ["room", "closed"]
    assert room.waiting == 0
