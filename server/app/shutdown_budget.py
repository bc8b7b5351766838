"""One clock for a shutdown: every stage after SIGTERM takes its share of the same bound.

``SSE_SHUTDOWN_TIMEOUT_SECONDS`` bounds the whole shutdown, but its stages run one after another:
the drain (flush, deliver, end the streams), then the batcher's close (what is still unstored goes to
the dead-letter file), then the store's (connections in use are reset, then terminated). Each used
to take its own timeout from its own start, so a hung database made them add up, and the statement
timeout could stand in for all of them. Here each stage asks what is left of its share since the
drain began: the batcher closes by 80 % of the bound, the store by 100 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["ShutdownBudget"]

# A stage always gets a moment: the batcher's close still appends what it holds to the dead-letter
# file (shielded), and the store's close still asks each connection to end cleanly first.
_FLOOR_SECONDS: Final = 0.25


class ShutdownBudget:
    """The bound of one shutdown and the moment it began (the drain was asked for)."""

    __slots__ = ("_clock", "_started", "total")

    def __init__(self, total: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._clock = clock
        self._started: float | None = None

    def start(self) -> None:
        """Start the clock; later calls keep the first start."""
        if self._started is None:
            self._started = self._clock()

    def left(self, share: float) -> float:
        """Seconds left until ``share`` of the bound has passed since the start (all of it, unstarted).

        Never less than a quarter of a second, so a late stage still does its cheap part.
        """
        elapsed = 0.0 if self._started is None else self._clock() - self._started
        return max(_FLOOR_SECONDS, self.total * share - elapsed)
