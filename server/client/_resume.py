"""Resuming a stream without I/O: the request, the watermark, the retry hint and the backoff.

Apart from ``subscribe.py`` so the sync and the async subscriber share every decision and differ
only in how they wait and read: :class:`Resume` builds each request, judges each answer, takes
each message and says how long to wait before the next attempt, and never touches the network.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any, Final

import httpx
import msgspec
from httpx_sse import ServerSentEvent

from sse_batcher.batcher.errors import BatcherError
from sse_batcher.server.client.events import CONTROL_TYPES, SNAPSHOT_TYPE, StreamEvent, snapshot_events, stream_events

__all__ = ["DEFAULT_RETRY_SECONDS", "RECONNECT_ERRORS", "Resume", "Retryable", "StreamRefusedError"]

logger = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS: Final = 1.0
# A 4xx says the request is wrong and a retry would repeat it, except these three, which say
# "later" (and 204 is the server's way of saying "do not reconnect", as for EventSource).
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})
_DECODER: Final = msgspec.json.Decoder()


class StreamRefusedError(BatcherError):
    """The server refused the stream in a way a retry cannot fix (bad filter, token, url)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Retryable(Exception):
    """The server answered, but not with a stream; a later attempt may succeed (5xx, 408, 425, 429)."""


# What ends one attempt and leads to the next; anything else ends the subscription.
RECONNECT_ERRORS: Final = (httpx.TransportError, Retryable)


def _int_id(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class Resume:
    """What both subscribers share, without any I/O: request, watermark, retry hint, backoff."""

    def __init__(
        self,
        types: Sequence[str] | str | None,
        source: str | None,
        token: str | None,
        last_event_id: int | None,
        retry_seconds: float,
        max_delay_seconds: float,
        snapshot: bool = False,
    ) -> None:
        self._params: dict[str, str] = {}
        if snapshot:
            # Only a fresh stream starts from the state: a resume (Last-Event-ID) ignores it.
            self._params["snapshot"] = "1"
        type_list = types if isinstance(types, str) else ",".join(types or ())
        if type_list:
            self._params["types"] = type_list
        if source:
            self._params["source"] = source
        self._token = token
        self.last_id = last_event_id
        self.retry_seconds = retry_seconds if retry_seconds > 0 else DEFAULT_RETRY_SECONDS
        self._max_delay_seconds = max_delay_seconds
        self._attempt = 0
        self._random = random.Random()

    def request(self) -> dict[str, Any]:
        """The query parameters and headers of the next attempt (``Last-Event-ID`` included)."""
        headers = {}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return {"params": self._params, "headers": headers}

    def opened(self, response: httpx.Response) -> None:
        """Check the answer before reading it as a stream.

        Raises:
            StreamRefusedError: a status or content type a retry cannot fix.
            Retryable: any other failure status.
        """
        status = response.status_code
        if status == 204 or 300 <= status < 400 or (400 <= status < 500 and status not in _RETRYABLE_4XX):
            raise StreamRefusedError(f"HTTP {status}", status)
        if status != 200:
            raise Retryable(f"HTTP {status}")
        content_type = response.headers.get("content-type", "")
        if not content_type.lower().startswith("text/event-stream"):
            raise StreamRefusedError(f"unexpected content type {content_type!r}", status)
        self._attempt = 0

    def take(self, message: ServerSentEvent) -> list[StreamEvent]:
        """The events of one SSE message not yet delivered; updates the watermark and retry hint."""
        if message.retry is not None and message.retry > 0:
            self.retry_seconds = message.retry / 1000
        if not message.data:
            return []
        try:
            body = _DECODER.decode(message.data)
        except msgspec.DecodeError:
            return []
        if message.event in CONTROL_TYPES or (isinstance(body, dict) and body.get("type") in CONTROL_TYPES):
            # The server no longer has what we asked for (or was reset): take what it has from here.
            # With nothing stored (no first id), 0: every id from here is new, and a reconnect
            # before the next message asks for all of them rather than for the live stream only.
            first = _int_id(body.get("first_available_id")) if isinstance(body, dict) else None
            self.last_id = first - 1 if first is not None else 0
            return []
        # httpx-sse repeats the last id on a message without one; every message of this server
        # that is not a control message has its own.
        message_id = _int_id(message.id)
        if message.event == SNAPSHOT_TYPE and message_id is not None:
            # The live stream goes on after the id the snapshot is consistent with.
            self.last_id = message_id
            return snapshot_events(body)
        if message_id is not None:
            if self.last_id is not None and message_id <= self.last_id:
                return []  # a duplicate after a resume
            self.last_id = message_id
        return stream_events(body, message_id)

    def next_delay(self, url: str, reason: str) -> float:
        """The next reconnect delay: exponential from the ``retry:`` hint, capped, half jittered."""
        self._attempt += 1
        cap = max(self._max_delay_seconds, self.retry_seconds)
        full = min(cap, self.retry_seconds * 2.0 ** (self._attempt - 1))
        delay = full / 2 + self._random.random() * full / 2
        logger.info("%s: %s; reconnecting in %.2f s (attempt %d)", url, reason, delay, self._attempt)
        return delay

    def delay_after(self, url: str, error: Exception | None) -> float:
        """The delay after an attempt that ended with ``error`` (None: the server ended the stream)."""
        reason = "the stream ended" if error is None else f"{type(error).__name__}: {error}"
        return self.next_delay(url, reason)
