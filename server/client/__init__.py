"""Clients of a running server: a Python subscriber, and the load tool built on the same parsing.

Enters: the SSE stream of ``GET /events``.
Leaves: one :class:`StreamEvent` per original event (aggregates unrolled), resumed without a gap
after a dropped connection; or, for ``sse-batcher loadtest``, delivery counts and latencies.
"""

from __future__ import annotations

from sse_batcher.server.client.subscribe import StreamEvent, StreamRefusedError, asubscribe, subscribe, unroll

__all__ = ["StreamEvent", "StreamRefusedError", "asubscribe", "subscribe", "unroll"]
