"""Room: the one back-pressure primitive between emitters and the flush loop.

It counts what the buffer holds, in events and in encoded bytes, against two limits. An emitter
that does not fit waits for room, whatever it runs on: a worker thread blocks on a Condition up to
its deadline, a coroutine awaits without blocking its loop. Taking events out releases room and
wakes every waiter. Closing wakes every waiter with
:class:`~sse_batcher.batcher.errors.BatcherClosedError`, and from then on nothing fits, so no event
is accepted once a shutdown has begun to drain. anyio's memory stream closes the same way, so no
waiter outlives the stream.

Everything here runs under :attr:`Room.lock`, which the buffer holds for its append, so the check
for room and the append are one step.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sse_batcher.batcher.errors import BatcherClosedError, BufferFullError

__all__ = ["Room"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Room:
    """Events and bytes held, their limits, and everyone waiting for room; see the module.

    ``events`` and ``bytes`` are read and changed only under ``lock``. The buffer's hot path reads
    ``events``, ``bytes``, ``event_limit`` and ``byte_limit`` directly: once closed, both limits are
    zero, so that one check sends every later emit to :meth:`wait`, which raises.
    """

    __slots__ = (
        "_async_waiters",
        "_cond",
        "_thread_waiters",
        "byte_limit",
        "bytes",
        "closed",
        "event_limit",
        "events",
        "lock",
        "loop_thread",
        "max_bytes",
        "max_events",
        "rejected",
    )

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.event_limit = max_events
        self.byte_limit = max_bytes
        self.events = 0
        self.bytes = 0
        self.closed = False
        self.rejected = 0
        # The event loop's thread never waits: its flush is what would make room.
        self.loop_thread: int | None = None
        self._thread_waiters = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def fits(self, events: int, nbytes: int) -> bool:
        """Whether ``events`` events of ``nbytes`` bytes in all fit now (lock held)."""
        return self.events + events <= self.event_limit and self.bytes + nbytes <= self.byte_limit

    @property
    def waiting(self) -> int:
        """Threads and coroutines waiting for room now."""
        return self._thread_waiters + len(self._async_waiters)

    def wait(self, events: int, nbytes: int, timeout: float | None) -> None:
        """Block this thread until the events fit, with the lock held; the caller then adds them.

        ``timeout`` None or <= 0, or a call on the event loop's thread, does not wait.

        Raises:
            BatcherClosedError: the batcher is closing or closed (also while waiting).
            BufferFullError: no room within ``timeout``; ``rejected`` counts the events.
        """
        if self.closed:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        if self.fits(events, nbytes):
            return
        if not timeout or timeout <= 0 or threading.get_ident() == self.loop_thread:
            raise self.refuse(events)
        deadline = time.monotonic() + timeout
        self._thread_waiters += 1
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.rejected += events
                    raise BufferFullError(f"buffer still full after waiting {timeout:g} s; retry later")
                self._cond.wait(remaining)
                if self.closed:
                    raise BatcherClosedError("batcher closed while waiting for room; the event was not accepted")
                if self.fits(events, nbytes):
                    return
        finally:
            self._thread_waiters -= 1

    def refuse(self, events: int) -> BufferFullError:
        """Count ``events`` refused for want of room and return the error that says so (lock held)."""
        self.rejected += events
        if self.events + events > self.event_limit:
            return BufferFullError(f"buffer full ({self.events} events waiting); retry later")
        return BufferFullError(f"buffer full ({self.bytes} bytes waiting); retry later")

    async def wait_async(self, events: int, nbytes: int) -> None:
        """Wait, without blocking the loop, until the events may fit; the caller then tries again.

        Raises:
            BatcherClosedError: the batcher is closing or closed (also while waiting).
        """
        loop = asyncio.get_running_loop()
        with self.lock:
            if self.closed:
                raise BatcherClosedError("batcher is closed; no more events are accepted")
            if self.fits(events, nbytes):
                return
            future: asyncio.Future[None] = loop.create_future()
            self._async_waiters.append((loop, future))
        try:
            await future
        except BaseException:  # cancelled: leave the list, so close() and release() skip it
            with self.lock:
                self._async_waiters = [w for w in self._async_waiters if w[1] is not future]
            raise
        if self.closed:
            raise BatcherClosedError("batcher closed while waiting for room; the event was not accepted")

    def add(self, events: int, nbytes: int) -> None:
        """Count events now held (lock held)."""
        self.events += events
        self.bytes += nbytes

    def release(self, events: int, nbytes: int) -> None:
        """Count events taken out and wake every waiter (lock held)."""
        self.events -= events
        self.bytes -= nbytes
        if events and (self._thread_waiters or self._async_waiters):
            self._wake_all()

    def close(self) -> None:
        """Accept nothing more and wake every waiter with BatcherClosedError. Idempotent."""
        with self.lock:
            self.closed = True
            self.event_limit = self.byte_limit = 0
            self._wake_all()

    def _wake_all(self) -> None:
        if self._thread_waiters:
            self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody is left to wake
                pass
