"""Clients of a running server: a Python subscriber, and the load tool built on the same parsing.

Enters: the SSE stream of ``GET /events``.
Leaves: one :class:`StreamEvent` per original event (aggregates unrolled by :func:`unroll`),
resumed without a gap after a dropped connection (:func:`subscribe`, :func:`asubscribe`); or, for
``sse-batcher loadtest`` (``loadtest.py``), delivery counts and latencies.
Next: the application that consumes the events; nothing in the server imports this package.
"""

from __future__ import annotations

from sse_batcher.server.client.events import StreamEvent, unroll
from sse_batcher.server.client.subscribe import StreamRefusedError, asubscribe, subscribe

__all__ = ["StreamEvent", "StreamRefusedError", "asubscribe", "subscribe", "unroll"]
