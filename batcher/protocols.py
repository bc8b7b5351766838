"""The interfaces the batcher depends on, so a store or subscriber can be swapped in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import Protocol

import msgspec

from .events import Message, StoredMessage

__all__ = ["EventStore", "Rejected", "WriteResult"]


class Rejected(msgspec.Struct, frozen=True):
    """A message PostgreSQL refused; retrying it cannot succeed, so it is quarantined."""

    message: Message
    reason: str


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
    ) -> AsyncIterator[StoredMessage]:
        """Yield stored messages with id > ``after_id`` in id order, fetched page by page."""
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
