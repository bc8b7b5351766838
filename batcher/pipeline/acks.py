"""Acknowledged emits, the caller's side: put events with a waiter each, wait until they are stored.

``emit(..., wait=True)`` blocks a worker thread on its event's future; ``publish()`` and
``aemit(..., wait=True)`` await theirs on the event loop. Either way the waiters are registered
with the tracker (``tracker.py``) under the buffer's lock, as each event gets its seq, so no flush
can store an event before its waiter exists; the flush loop resolves them from what the writer
returns. When time runs out, the error says where the events stand: ``buffered`` (in memory),
``kept`` (in the dead-letter file, stored once PostgreSQL answers) or ``closed``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Sequence

import anyio

from sse_batcher.batcher.errors import AckTimeoutError, BatcherClosedError, StoreRejectedError
from sse_batcher.batcher.pipeline.buffer import EventBuffer
from sse_batcher.batcher.pipeline.intake import Item
from sse_batcher.batcher.pipeline.tracker import BUFFERED, KEPT, Ack, FlushTracker

__all__ = ["put_and_block", "put_and_wait", "timeout_error", "wait_for_acks"]


def put_and_block(buffer: EventBuffer, tracker: FlushTracker, item: Item, limit: float) -> int:
    """Put one event and block this (worker) thread until it is stored; return its message id.

    ``limit`` is one deadline for the whole call: the wait for room in a full buffer and the wait
    for the commit share it.

    Raises:
        BufferFullError: no room within ``limit``; nothing was accepted.
        BatcherClosedError: the batcher closed before the event was accepted.
        StoreRejectedError: PostgreSQL refused the event.
        AckTimeoutError: not stored within ``limit`` (``kept`` says whether it is on disk).
    """
    deadline = time.monotonic() + limit
    acks, on_seq = tracker.expect([(item[1], item[0])])
    buffer.put_item(item, limit, on_seq)
    try:
        return acks[0].future.result(max(deadline - time.monotonic(), 0.0))
    except (concurrent.futures.TimeoutError, BatcherClosedError):
        raise timeout_error(acks, limit) from None


async def put_and_wait(buffer: EventBuffer, tracker: FlushTracker, items: list[Item], limit: float) -> list[int]:
    """Put events all or nothing and wait, without blocking the loop, until all are stored.

    Raises:
        BufferFullError: they do not all fit; none was accepted.
        StoreRejectedError: PostgreSQL refused one of them.
        AckTimeoutError: not all stored within ``limit`` (``kept`` says whether the rest is on disk).
    """
    acks, on_seq = tracker.expect([(item[1], item[0]) for item in items])
    buffer.put_many(items, on_seq)
    return await wait_for_acks(acks, limit, tracker)


def _outcome(acks: Sequence[Ack]) -> tuple[list[int | None], str | None]:
    """The ids of ``acks`` stored so far, and the state of the first that is not (None: all are)."""
    ids: list[int | None] = []
    state: str | None = None
    for ack in acks:
        future = ack.future
        if future.done() and future.exception() is None:
            ids.append(future.result())
        else:
            ids.append(None)
            if state is None:
                # Closed with the event kept on disk is still "kept": a retry would store it twice.
                state = "closed" if future.done() and ack.state != KEPT else ack.state
    return ids, state


def timeout_error(acks: Sequence[Ack], seconds: float, *, ended: bool = False) -> AckTimeoutError:
    """The error for acks not all stored within ``seconds`` (``ended``: the wait was ended first)."""
    ids, state = _outcome(acks)
    unstored = [a for a in acks if not (a.future.done() and a.future.exception() is None)]
    kept = all(a.state == KEPT for a in unstored)
    within = "before the batcher stopped waiting to shut down" if ended else f"within {seconds:g} s"
    return AckTimeoutError(
        f"{len(unstored)} of {len(acks)} events were not committed {within} "
        f"({'kept on disk, to be stored once PostgreSQL answers' if kept else state})",
        state=state or BUFFERED,
        kept=kept,
        ids=ids,
    )


async def wait_for_acks(acks: Sequence[Ack], limit: float, tracker: FlushTracker) -> list[int]:
    """Wait up to ``limit`` seconds for every ack, or until ``tracker.end_waits()``; return their ids.

    The early end is for a shutdown: the server answers the wait with what it knows while it may
    still send an answer, rather than have the request cancelled under it.

    Raises:
        StoreRejectedError: PostgreSQL refused one of the events.
        AckTimeoutError: not all stored in time, or the wait was ended (``kept`` says whether the
            rest is on disk).
    """
    # Not asyncio.wrap_future: cancelling the wait (the timeout) would cancel the acks too, and a
    # late commit must still resolve them for anyone else asking.
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    remaining = len(acks)

    def one_done(_: object) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    for ack in acks:
        ack.future.add_done_callback(lambda f: loop.call_soon_threadsafe(one_done, f))
    ended = False

    def end() -> None:
        nonlocal ended
        ended = True
        done.set()

    def end_soon() -> None:
        loop.call_soon_threadsafe(end)

    forget = tracker.on_end_waits(end_soon)
    if forget is None:
        end()
    try:
        with anyio.move_on_after(limit):
            await done.wait()
    finally:
        if forget is not None:
            forget()
    ids, state = _outcome(acks)
    if state is None:
        return [i for i in ids if i is not None]
    for ack in acks:
        failure = ack.future.exception() if ack.future.done() else None
        if isinstance(failure, StoreRejectedError):
            raise failure
    raise timeout_error(acks, limit, ended=ended)
