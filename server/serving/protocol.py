"""uvicorn's HTTP/1.1 protocol with read timeouts and a header size limit: no connection is held for free.

uvicorn times out only an idle keep-alive connection. A peer that connects and sends nothing, sends
its headers a byte at a time, or a body a byte every few seconds, holds a socket (a file
descriptor) for ever, and about a thousand of them exhaust a default ``LimitNOFILE`` (Slowloris).
Headers have no size limit either. :class:`GuardedHttpToolsProtocol` extends uvicorn's httptools
protocol (uvicorn takes a protocol class as ``http=``) with three limits, checked on the event loop
with one timer per connection, not a task:

- **Header timeout** (``SSE_HEADER_TIMEOUT_SECONDS``): from the connection's start, or from the first
  byte of a later request on it, the request line and headers must be complete in time; otherwise
  408 and close.
- **Body timeout** (``SSE_BODY_TIMEOUT_SECONDS``): from the end of the headers, the whole body must
  arrive in time (a total, not a per-read limit, so a byte every few seconds does not reset it);
  otherwise 408 (when no answer has started) and close. The app then sees ``http.disconnect``.
- **Header size** (``SSE_MAX_HEADER_BYTES``): the request line and headers are counted as they are
  fed to the parser; past the limit the connection gets 431 and closes at once, before the parser
  and uvicorn's callbacks spend time on the rest.

Its 400 on a malformed request is JSON with the security headers, like every other error
(:func:`sse_batcher.server.security.errors.raw_error`). Where a server needs these limits and this
class is not in use (another ASGI server, or h11 without httptools), the proxy in front must set
them (docs/deploying.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sse_batcher import constants
from sse_batcher.server.security.errors import raw_error

__all__ = ["ConnectionLimits", "GuardedHttpToolsProtocol", "guarded_protocol"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """How long a peer may take to send a request's headers and body, and how large the headers may be."""

    header_timeout_seconds: float = constants.SSE_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = constants.SSE_BODY_TIMEOUT_SECONDS
    max_header_bytes: int = constants.SSE_MAX_HEADER_BYTES


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ConnectionLimits` (see the module docstring).

    Use :func:`guarded_protocol` to get a subclass bound to given limits.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._header_bytes = 0

    # -- connection -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_seconds, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._reading_headers:
            super().data_received(data)
            return
        # Feed no more than the header limit allows; if the headers are still not complete, refuse.
        room = self.limits.max_header_bytes - self._header_bytes
        head, rest = data[: room + 1], data[room + 1 :]
        self._header_bytes += len(head)
        super().data_received(head)
        if self.transport.is_closing():
            return
        if self._reading_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"request headers are larger than {self.limits.max_header_bytes} bytes")
            return
        if rest:
            self.data_received(rest)

    # -- parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        if self._timer is None:  # a later request on a kept-alive connection
            self._arm(self.limits.header_timeout_seconds, self._headers_timed_out)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._arm(self.limits.body_timeout_seconds, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._reading_headers = True
        super().on_message_complete()

    # -- answers ----------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(raw_error(400, msg, self.server_state.default_headers))
        self.transport.close()

    def _headers_timed_out(self) -> None:
        self._timer = None
        self._refuse(408, f"request headers not received in {self.limits.header_timeout_seconds:g} s")

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            logger.info("closed a connection whose request body stalled")
            self.transport.close()
            return
        self._refuse(408, f"request body not received in {self.limits.body_timeout_seconds:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close; the app, if one runs for this request, sees a disconnect."""
        self._disarm()
        if self.transport.is_closing():
            return
        logger.info("refused a connection: %s", message)
        self.transport.write(raw_error(status, message, self.server_state.default_headers))
        self.transport.close()

    # -- the timer --------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A :class:`GuardedHttpToolsProtocol` subclass bound to ``limits`` (uvicorn's ``http=`` takes a class)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
