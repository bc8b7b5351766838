"""The fan-out: every committed message, encoded once, handed to every SSE subscriber.

Enters: committed messages in strictly increasing id order, from the node's log follower
(:meth:`Hub.publish`); subscribers, from the stream endpoint.
Inside: the :class:`Hub` joins what arrived in one fan-out interval into one frame and queues it to
each :class:`~.subscriber.Subscriber`; one that falls behind is lagged and catches up from the store.
:mod:`.latency` measures how old events are when they first reach a client.
Leaves: ready-made SSE bytes, which the stream endpoint writes to each socket.
"""

from __future__ import annotations

from sse_batcher.server.stream.hub import Hub, HubClosedError, HubError, HubFullError, HubStats
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["Hub", "HubClosedError", "HubError", "HubFullError", "HubStats", "Subscriber"]
