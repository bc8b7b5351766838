"""The interfaces between the parts: the store a batcher writes to, the batcher the server and workers use.

A custom backend implements :class:`EventStore`; :class:`EventBatcher` is what one batcher and the
A/B split (``sizing.split``) both offer, so the server and the workers take either.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import msgspec

from sse_batcher.batcher.config import BatcherConfig
from sse_batcher.batcher.events import NORMAL, Message, StoredMessage
from sse_batcher.batcher.lifecycle import State
from sse_batcher.batcher.stats import BatcherStats

__all__ = ["EventBatcher", "EventStore", "Listener", "Rejected", "WriteResult"]

# Called after each commit with the messages it stored, in id order.
Listener = Callable[[Sequence[StoredMessage]], None]


class Rejected(msgspec.Struct, frozen=True):
    """A message PostgreSQL refused; retrying it cannot succeed, so it is quarantined.

    ``conflict`` True: its idempotency key is stored already with other content. It is the
    client's mistake, answered to its waiter, and never quarantined (a client could fill the disk).
    """

    message: Message
    reason: str
    conflict: bool = False


class WriteResult(msgspec.Struct, frozen=True):
    """What one write committed (in id order) and what it had to leave out."""

    stored: list[StoredMessage]
    rejected: list[Rejected]


class EventStore(Protocol):
    """Durable, ordered storage of messages (PostgreSQL in production)."""

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        """Store ``messages`` in one transaction, skipping any already stored (same ``idem_key``).

        Raises:
            StoreUnavailableError: connection lost, timeout or serialization failure; retry later.
        """
        ...

    def replay(
        self,
        after_id: int,
        *,
        types: Collection[str] | None = None,
        sources: Collection[str] | None = None,
        page_permit: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> AsyncGenerator[StoredMessage, None]:
        """Yield stored messages with id > ``after_id`` in id order, fetched page by page.

        ``page_permit`` is entered before each page is fetched and left once its last row was taken.
        """
        ...

    async def bounds(self) -> tuple[int | None, int | None]:
        """Return the first and last stored ids, ``(None, None)`` when empty."""
        ...

    async def ping(self) -> None:
        """Return when the store answers.

        Raises:
            StoreUnavailableError: it does not.
        """
        ...


class EventBatcher(Protocol):
    """What the server and the workers use of a batcher: one :class:`SSEEventBatcher`, or a split."""

    @property
    def state(self) -> State: ...

    @property
    def config(self) -> BatcherConfig: ...

    @property
    def store(self) -> EventStore: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def batch_timeout_seconds(self) -> float: ...

    @property
    def backlog(self) -> int: ...

    def emit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        timeout: float | None = None,
        wait: bool = False,
    ) -> int: ...

    async def aemit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        wait: bool = False,
        timeout: float | None = None,
    ) -> int: ...

    def emit_many(
        self,
        events: Sequence[dict[str, Any]],
        *,
        default_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[int]: ...

    async def publish(
        self,
        events: Sequence[dict[str, Any]],
        *,
        timeout: float | None = None,
        default_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[int]: ...

    def end_waits(self) -> None: ...

    async def flush(self, timeout: float | None = None) -> bool: ...

    def add_listener(self, listener: Listener) -> Callable[[], None]: ...

    def statistics(self) -> BatcherStats: ...

    def get_stats(self) -> dict[str, Any]: ...

    async def start(self) -> None: ...

    async def aclose(self, timeout: float | None = None) -> None: ...
