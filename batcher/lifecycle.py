"""One lifecycle for everything that owns tasks or connections: NEW -> RUNNING -> CLOSING -> CLOSED.

Every such class (the batcher, the load monitor, the sizing, the store, the log follower) derives
from :class:`Service`: ``start()`` once, ``aclose()`` as often as you like, or ``async with``. A
second ``start()`` is a clear :class:`~sse_batcher.batcher.errors.BatcherClosedError`, never a silent restart.
"""

from __future__ import annotations

import enum
from types import TracebackType
from typing import Self

from sse_batcher.batcher.errors import BatcherClosedError

__all__ = ["Service", "State"]


class State(enum.Enum):
    """Lifecycle of a service: NEW -> RUNNING -> CLOSING -> CLOSED."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Service:
    """Base of the classes that own tasks or connections; subclasses implement start() and aclose()."""

    _state: State = State.NEW

    @property
    def state(self) -> State:
        return self._state

    def _begin_start(self) -> None:
        """Move NEW -> RUNNING, or refuse.

        Raises:
            BatcherClosedError: already started or closed.
        """
        if self._state is not State.NEW:
            raise BatcherClosedError(f"cannot start a {type(self).__name__} that is {self._state.value}")
        self._state = State.RUNNING

    def _begin_close(self) -> bool:
        """Move to CLOSED; False when it already was (aclose() then has nothing to do)."""
        if self._state is State.CLOSED:
            return False
        self._state = State.CLOSED
        return True

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
