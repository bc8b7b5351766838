"""A Python client for sse-batcher streams: subscribe, resume, and get every original event.

:func:`subscribe` (a generator) and :func:`asubscribe` (an async generator) read ``GET /events``
with httpx-sse and yield one :class:`StreamEvent` per original event, whether it arrived alone or
inside an aggregate, in order. They do what the browser helper (``frontend/sse-batcher.js``) does:

- resume with ``Last-Event-ID`` after every reconnect, and drop any message whose id is not greater
  than the last one delivered, so a resume never yields a duplicate; a ``HISTORY_TRUNCATED``
  message resets that watermark to the first id the server still has (ids may restart after the
  database was reset);
- honour the server's ``retry:`` hint as the base reconnect delay, growing exponentially with
  jitter up to a cap, so a restarting server is not hit by every client at once;
- treat a stream silent for ``idle_timeout_seconds`` (no message, no ``: ping``) as dead, since a
  half-open TCP connection never reports an error;
- stop with :class:`StreamRefusedError` when retrying cannot help (a bad filter, a wrong token).

:func:`unroll` is the pure part: the full original events of one message payload. Aggregates are
compact on the wire (their type and source are said once, see ``batcher/pipeline/aggregate.py``); it puts
``type`` and ``source`` back, so every event looks as it would have travelling alone.

Both generators hold an open connection: leave them with ``break`` (sync) or through
``contextlib.aclosing`` (async) so the connection is closed at once, not when collected.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

import anyio
import httpx
import msgspec
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

from sse_batcher.batcher.errors import BatcherError

__all__ = ["StreamEvent", "StreamRefusedError", "asubscribe", "subscribe", "unroll"]

logger = logging.getLogger(__name__)

_CONTROL_TYPES: Final = frozenset({"HISTORY_TRUNCATED"})
# A 4xx says the request is wrong and a retry would repeat it, except these three, which say
# "later" (and 204 is the server's way of saying "do not reconnect", as for EventSource).
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})
_DEFAULT_RETRY_SECONDS: Final = 1.0
_DECODER: Final = msgspec.json.Decoder()


class StreamRefusedError(BatcherError):
    """The server refused the stream in a way a retry cannot fix (bad filter, token, url)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent:
    """One original event, and the id of the message that carried it (the resume point)."""

    message_id: int | None
    type: str
    source: str
    seq: int
    ts: float
    # Left out of the hash, so the event stays hashable although its data is a dict.
    data: dict[str, Any] = field(hash=False)
    priority: str = "normal"
    key: str | None = None


def unroll(payload: bytes | str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full original events of one message's ``data:`` payload, in order.

    An aggregate gives its inner events with ``type`` (its ``event_type``) and ``source`` put
    back; a single event gives itself; a control message (``HISTORY_TRUNCATED``) or anything that
    is not a JSON object gives nothing. Inner events that already carry ``type`` (aggregates
    stored before they were made compact) are taken as they are.

    Raises:
        msgspec.DecodeError: ``payload`` is bytes or text that is not JSON.
    """
    body = _DECODER.decode(payload) if isinstance(payload, bytes | str) else payload
    if not isinstance(body, Mapping):
        return []
    inner = body.get("events")
    if isinstance(inner, list):
        event_type, source = body.get("event_type"), body.get("source")
        return [
            dict(item) if "type" in item else {"type": event_type, "source": source, **item}
            for item in inner
            if isinstance(item, Mapping)
        ]
    if body.get("type") in _CONTROL_TYPES:
        return []
    return [dict(body)]


def _stream_event(event: Mapping[str, Any], message_id: int | None) -> StreamEvent | None:
    type_, source, seq, ts = event.get("type"), event.get("source"), event.get("seq"), event.get("ts")
    data, priority, key = event.get("data"), event.get("priority", "normal"), event.get("key")
    if not (isinstance(type_, str) and isinstance(source, str) and isinstance(data, dict)):
        return None  # not an event of this wire format; nothing to hand on
    if not (_is_int(seq) and (_is_int(ts) or isinstance(ts, float)) and isinstance(priority, str)):
        return None
    return StreamEvent(
        message_id=message_id,
        type=type_,
        source=source,
        seq=seq,
        ts=float(ts),
        data=data,
        priority=priority,
        key=key if isinstance(key, str) else None,
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_id(value: object) -> int | None:
    if _is_int(value):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class _Retryable(Exception):
    """The server answered, but not with a stream; a later attempt may succeed (5xx, 408, 425, 429)."""


class _Resume:
    """What both generators share, without any I/O: request, watermark, retry hint, backoff."""

    def __init__(
        self,
        *,
        types: Sequence[str] | str | None,
        source: str | None,
        token: str | None,
        last_event_id: int | None,
        retry_seconds: float,
        max_delay_seconds: float,
    ) -> None:
        self._params: dict[str, str] = {}
        type_list = types if isinstance(types, str) else ",".join(types or ())
        if type_list:
            self._params["types"] = type_list
        if source:
            self._params["source"] = source
        self._token = token
        self.last_id = last_event_id
        self.retry_seconds = retry_seconds if retry_seconds > 0 else _DEFAULT_RETRY_SECONDS
        self._max_delay_seconds = max_delay_seconds
        self._attempt = 0
        self._random = random.Random()

    def request(self) -> dict[str, Any]:
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
            _Retryable: any other failure status.
        """
        status = response.status_code
        if status == 204 or 300 <= status < 400 or (400 <= status < 500 and status not in _RETRYABLE_4XX):
            raise StreamRefusedError(f"HTTP {status}", status)
        if status != 200:
            raise _Retryable(f"HTTP {status}")
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
        if message.event in _CONTROL_TYPES or (isinstance(body, dict) and body.get("type") in _CONTROL_TYPES):
            # The server no longer has what we asked for (or was reset): take what it has from here.
            # With nothing stored (no first id), 0: every id from here is new, and a reconnect
            # before the next message asks for all of them rather than for the live stream only.
            first = _int_id(body.get("first_available_id")) if isinstance(body, dict) else None
            self.last_id = first - 1 if first is not None else 0
            return []
        # httpx-sse repeats the last id on a message without one; every message of this server
        # that is not a control message has its own.
        message_id = _int_id(message.id)
        if message_id is not None:
            if self.last_id is not None and message_id <= self.last_id:
                return []  # a duplicate after a resume
            self.last_id = message_id
        events = (_stream_event(event, message_id) for event in unroll(body))
        return [event for event in events if event is not None]

    def next_delay(self, url: str, reason: str) -> float:
        """The next reconnect delay: exponential from the ``retry:`` hint, capped, half jittered."""
        self._attempt += 1
        cap = max(self._max_delay_seconds, self.retry_seconds)
        full = min(cap, self.retry_seconds * 2.0 ** (self._attempt - 1))
        delay = full / 2 + self._random.random() * full / 2
        logger.info("%s: %s; reconnecting in %.2f s (attempt %d)", url, reason, delay, self._attempt)
        return delay


def _timeout(idle_timeout_seconds: float | None) -> httpx.Timeout:
    return httpx.Timeout(10.0, read=idle_timeout_seconds)


def subscribe(
    url: str,
    *,
    types: Sequence[str] | str | None = None,
    source: str | None = None,
    token: str | None = None,
    last_event_id: int | None = None,
    retry_seconds: float = _DEFAULT_RETRY_SECONDS,
    max_delay_seconds: float = 10.0,
    idle_timeout_seconds: float | None = 45.0,
    client: httpx.Client | None = None,
) -> Generator[StreamEvent, None, None]:
    """Yield every original event of the stream at ``url`` (e.g. ``http://host:8000/events``), forever.

    ``types`` and ``source`` are the server-side filters; ``token`` is sent as a bearer token;
    ``last_event_id`` resumes after that message. Reconnects on any network error, server error or
    end of stream. ``client`` (default: one of its own, closed at the end) lets you set transports,
    proxies or certificates; its read timeout is then yours.

    Raises:
        StreamRefusedError: the server refused the stream: 204, a redirect left unfollowed, a 4xx
            other than 408/425/429, or an answer that is not an event stream.
    """
    resume = _Resume(
        types=types,
        source=source,
        token=token,
        last_event_id=last_event_id,
        retry_seconds=retry_seconds,
        max_delay_seconds=max_delay_seconds,
    )
    own = client is None
    http = httpx.Client(timeout=_timeout(idle_timeout_seconds), follow_redirects=True) if client is None else client
    try:
        while True:
            try:
                with connect_sse(http, "GET", url, **resume.request()) as stream:
                    resume.opened(stream.response)
                    for message in stream.iter_sse():
                        yield from resume.take(message)
            except (httpx.TransportError, _Retryable) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = "the stream ended"
            time.sleep(resume.next_delay(url, reason))
    finally:
        if own:
            http.close()


async def asubscribe(
    url: str,
    *,
    types: Sequence[str] | str | None = None,
    source: str | None = None,
    token: str | None = None,
    last_event_id: int | None = None,
    retry_seconds: float = _DEFAULT_RETRY_SECONDS,
    max_delay_seconds: float = 10.0,
    idle_timeout_seconds: float | None = 45.0,
    client: httpx.AsyncClient | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """The async twin of :func:`subscribe`; leave it through ``contextlib.aclosing``.

    Raises:
        StreamRefusedError: the server refused the stream: 204, a redirect left unfollowed, a 4xx
            other than 408/425/429, or an answer that is not an event stream.
    """
    resume = _Resume(
        types=types,
        source=source,
        token=token,
        last_event_id=last_event_id,
        retry_seconds=retry_seconds,
        max_delay_seconds=max_delay_seconds,
    )
    own = client is None
    http = (
        httpx.AsyncClient(timeout=_timeout(idle_timeout_seconds), follow_redirects=True) if client is None else client
    )
    try:
        while True:
            try:
                async with aconnect_sse(http, "GET", url, **resume.request()) as stream:
                    resume.opened(stream.response)
                    async for message in stream.aiter_sse():
                        for event in resume.take(message):
                            yield event
            except (httpx.TransportError, _Retryable) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                reason = "the stream ended"
            await anyio.sleep(resume.next_delay(url, reason))
    finally:
        if own:
            await http.aclose()
