"""The fan-out: every committed message, encoded once, handed to every SSE subscriber and written out.

Enters: committed messages in strictly increasing id order, from the node's log follower
(:meth:`Hub.publish`); subscribers, from the stream endpoint (``sse_batcher.server.app.stream``).
Inside: the :class:`Hub` stages what arrives within one fan-out interval, joins it into one
:mod:`.frame` and queues it to each :class:`Subscriber`; one that falls behind is lagged and its
:mod:`.delivery` catches it up from the store. :mod:`.keepalive` pings idle streams and drops
frozen peers; :mod:`.latency` measures how old events are when they first reach a client; :mod:`.snapshot` frames the
latest state a stream opened with ``snapshot=1`` starts with.
Leaves: ready-made SSE bytes, which each stream's :class:`HubStreamResponse` writes to its socket.
Next: the clients: browsers (``frontend/sse-batcher.js``) and :mod:`sse_batcher.server.client`.
"""

from __future__ import annotations

from sse_batcher.server.stream.hub import Hub, HubClosedError, HubError, HubFullError, HubStats
from sse_batcher.server.stream.response import HubStreamResponse
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["Hub", "HubClosedError", "HubError", "HubFullError", "HubStats", "HubStreamResponse", "Subscriber"]
