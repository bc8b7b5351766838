"""Keep-alive pings and send timeouts for every stream, swept by the hub's one task.

Kept apart from the fan-out because it is about connections, not messages. A stream that wrote
nothing for most of a ping interval gets a ``: ping`` comment, so proxies keep it open; a stream
whose write has not returned for the send timeout has a frozen peer, and its cancel scope is
cancelled (the stream ends). One sweep serves every stream, so an idle stream has no task of its
own and costs no CPU between pings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["KeepAlive"]

# A comment line: EventSource ignores it, and the bytes keep proxies from closing an idle stream.
_PING: Final = b": ping\n\n"


class KeepAlive:
    """Pings the idle subscribers and cancels the stuck ones; counts both."""

    __slots__ = ("_ping_seconds", "_send_timeout", "pings", "send_timeouts")

    def __init__(self, *, ping_seconds: float, send_timeout_seconds: float) -> None:
        self._ping_seconds = ping_seconds
        self._send_timeout = send_timeout_seconds
        self.pings = 0
        self.send_timeouts = 0

    @property
    def period_seconds(self) -> float:
        """How often to sweep: a quarter of the shorter of the ping interval and the send timeout."""
        return max(0.05, min(self._ping_seconds, self._send_timeout) / 4)

    def sweep(self, subscribers: Iterable[Subscriber], now: float) -> None:
        """Ping each subscriber idle for most of a ping interval; cancel each write stuck past the send timeout."""
        ping_after = self._ping_seconds * 0.75
        for subscriber in subscribers:
            since = subscriber.sending_since
            if since is not None:
                if now - since >= self._send_timeout and subscriber.scope is not None and not subscriber.timed_out:
                    subscriber.timed_out = True
                    self.send_timeouts += 1
                    subscriber.scope.cancel()
            elif now - subscriber.last_write >= ping_after and subscriber.scope is not None:
                subscriber.last_write = now
                self.pings += 1
                subscriber.ping(_PING)
