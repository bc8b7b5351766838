"""DeadlineClock: when the first buffered event is due, when some types have a batch timeout of their own.

The buffer asks this on every flush-loop wake-up, under its lock, so it must not scan the buffer.
Events are queued by timeout class (a type's own ``timeout_seconds``, or ``None`` for the batch
timeout) in seq order, so each class's earliest deadline is its head. It lives with the rules
because the classes are theirs (:meth:`AggregationRules.timeouts
<sse_batcher.batcher.rules.rules.AggregationRules.timeouts>`); the buffer only feeds it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Final

__all__ = ["DeadlineClock"]

# How many types' queues :meth:`DeadlineClock.queue_of` remembers; past this, it looks them up each
# time, so a client inventing a type per event cannot grow the table without bound.
_TYPE_CACHE_LIMIT: Final = 4096


class DeadlineClock:
    """The earliest deadline among buffered events, each type by its own batch timeout.

    :meth:`add` is O(1) and :meth:`drop_through` amortised O(1) per event, whatever the buffer
    holds. Its methods are called under the buffer's lock.
    """

    __slots__ = ("_timeouts", "_queues", "by_type")

    def __init__(self, timeouts: Mapping[str, float]) -> None:
        self._timeouts = dict(timeouts)
        self._queues: dict[float | None, deque[tuple[int, float]]] = {}
        # Each type's class queue, remembered by :meth:`queue_of` (bounded): a hot path looks a type
        # up here, once per event, and calls :meth:`queue_of` only on a miss.
        self.by_type: dict[str, deque[tuple[int, float]]] = {}

    def add(self, event_type: str, seq: int, ts: float) -> bool:
        """Record an event; True when its class was empty, so the earliest deadline may have moved."""
        queue = self.queue_of(event_type)
        queue.append((seq, ts))
        return len(queue) == 1

    def queue_of(self, event_type: str) -> deque[tuple[int, float]]:
        """The queue of ``event_type``'s class, for a hot path that appends ``(seq, monotonic)`` itself.

        Appending there is :meth:`add` without its call; the class was empty when the queue's
        length is 1 after the append.
        """
        queue = self.by_type.get(event_type)
        if queue is not None:
            return queue
        timeout = self._timeouts.get(event_type)
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        if len(self.by_type) < _TYPE_CACHE_LIMIT:
            self.by_type[event_type] = queue
        return queue

    def drop_through(self, seq: int) -> None:
        """Forget every event with seq <= ``seq`` (they were taken from the buffer's head)."""
        for queue in self._queues.values():
            while queue and queue[0][0] <= seq:
                queue.popleft()

    def next_deadline(self, timeout_seconds: float) -> float | None:
        """When the first waiting event is due (``timeout_seconds``: the batch timeout); None when none waits."""
        earliest = math.inf
        for timeout, queue in self._queues.items():
            if queue:
                earliest = min(earliest, queue[0][1] + (timeout_seconds if timeout is None else timeout))
        return None if earliest == math.inf else earliest
