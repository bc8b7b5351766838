"""BackgroundTask: one loop that runs until its owner closes, in a task group, never fire-and-forget."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import anyio

__all__ = ["BackgroundTask"]


class BackgroundTask:
    """Run ``run()`` in a task group from :meth:`start` until :meth:`aclose` cancels it.

    Like any anyio task group, start and close it from the same task (``async with`` does).
    """

    def __init__(self) -> None:
        self._stack: AsyncExitStack | None = None

    async def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        stack = AsyncExitStack()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        # Runs before the task group exits, so the loop is cancelled instead of waited for forever.
        stack.callback(task_group.cancel_scope.cancel)
        task_group.start_soon(run)
        self._stack = stack

    async def aclose(self) -> None:
        """Cancel the loop and wait until it has ended. Idempotent."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
