"""The pipeline: from ``emit()`` to a committed batch, behind :class:`SSEEventBatcher`.

Enters: events, from any thread or coroutine (``emit``, ``aemit``, ``emit_many``, ``publish``).
Inside, one way: :mod:`.intake` checks and encodes, :mod:`.buffer` holds (bounded, back-pressure),
:mod:`.flush` decides when a batch leaves, :mod:`.aggregate` groups it into messages,
:mod:`.writer` commits them (retries, :mod:`.breaker`, dead-letter file) and :mod:`.tracker`
tells whoever waits.
Leaves: committed :class:`~sse_batcher.batcher.events.StoredMessage` lists, to the listeners.
Next: :mod:`sse_batcher.batcher.log`, whose store the writer commits to and whose follower reads
the commits back for the server.
"""

from __future__ import annotations

from sse_batcher.batcher.pipeline.aggregate import aggregate, aggregate_type
from sse_batcher.batcher.pipeline.breaker import BreakerState, BreakerStats, CircuitBreaker
from sse_batcher.batcher.pipeline.facade import SSEEventBatcher
from sse_batcher.batcher.pipeline.flush import FlushReport

__all__ = [
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "FlushReport",
    "SSEEventBatcher",
    "aggregate",
    "aggregate_type",
]
