"""An async iterator of stored messages that can never stall the flush that feeds it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .events import StoredMessage

__all__ = ["Subscription"]


class Subscription:
    """Messages handed out after commit, in id order, through a bounded queue.

    The flush path calls :meth:`offer`, which never waits: a subscriber whose queue is full is
    closed with :attr:`lagged` set and :attr:`last_id` naming the last message it was given, so
    it can catch up from the store. Slowness therefore costs only the slow subscriber.
    """

    def __init__(self, queue_size: int, on_close: Callable[[Subscription], None]) -> None:
        self._send: MemoryObjectSendStream[StoredMessage]
        self._receive: MemoryObjectReceiveStream[StoredMessage]
        self._send, self._receive = anyio.create_memory_object_stream[StoredMessage](queue_size)
        self._on_close = on_close
        self.lagged = False
        self.last_id: int | None = None

    def offer(self, messages: Sequence[StoredMessage]) -> None:
        """Queue ``messages`` without waiting; close as lagged when they do not fit."""
        for message in messages:
            try:
                self._send.send_nowait(message)
            except anyio.WouldBlock:
                self.lagged = True
                self.close()
                return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            self.last_id = message.id

    def close(self) -> None:
        """Stop delivery; iteration ends after the messages already queued. Idempotent."""
        self._send.close()
        self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoredMessage:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        self._receive.close()
