"""The pipeline: from ``emit()`` to a committed batch, behind :class:`SSEEventBatcher`.

Enters: events, from any thread or coroutine (``emit``, ``aemit``, ``emit_many``, ``publish``).
Inside, one way: :mod:`.intake` checks and encodes, :mod:`.buffer` holds (bounded, back-pressure),
:mod:`.flush` decides when a batch leaves, :mod:`.aggregate` groups it into messages,
:mod:`.writer` commits them (retries, :mod:`.breaker`, dead-letter file) and :mod:`.tracker`
tells whoever waits (:mod:`.acks` is the waiting side of an emit that waits to be stored).
:mod:`.facade` holds the ways in; ``_core.py`` the parts wired together and their lifecycle.
Flush observers (the sizer) only take note of each flush; they act in their own task.
Leaves: committed :class:`~sse_batcher.batcher.events.StoredMessage` lists, to the listeners.
Next: :mod:`sse_batcher.batcher.log`, whose store the writer commits to and whose follower reads
the commits back for the server.
"""

from __future__ import annotations

from sse_batcher.batcher.pipeline.aggregate import aggregate, aggregate_type
from sse_batcher.batcher.pipeline.breaker import BreakerState, CircuitBreaker
from sse_batcher.batcher.pipeline.facade import SSEEventBatcher
from sse_batcher.batcher.pipeline.flush import FlushReport
from sse_batcher.batcher.stats import BreakerStats

__all__ = [
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "FlushReport",
    "SSEEventBatcher",
    "aggregate",
    "aggregate_type",
]
