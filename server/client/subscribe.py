"""A Python client for sse-batcher streams: subscribe, resume, and get every original event.

:func:`subscribe` (a generator) and :func:`asubscribe` (an async generator) read ``GET /events``
with httpx-sse and yield one :class:`StreamEvent` per original event, whether it arrived alone or
inside an aggregate, in order. They do what the browser helper (``frontend/sse-batcher.js``) does:

- with ``snapshot=True``, start from the latest state: the ``STATE_SNAPSHOT`` message is unrolled
  into one event per open key (flagged ``snapshot``), then the stream goes on live after its id;
- resume with ``Last-Event-ID`` after every reconnect, and drop any message whose id is not greater
  than the last one delivered, so a resume never yields a duplicate; a ``HISTORY_TRUNCATED``
  message resets that watermark to the first id the server still has (ids may restart after the
  database was reset);
- honour the server's ``retry:`` hint as the base reconnect delay, growing exponentially with
  jitter up to a cap, so a restarting server is not hit by every client at once;
- treat a stream silent for ``idle_timeout_seconds`` (no message, no ``: ping``) as dead, since a
  half-open TCP connection never reports an error;
- stop with :class:`StreamRefusedError` when retrying cannot help (a bad filter, a wrong token).

Every one of those decisions is made once, in ``_resume.py``; the two generators below are only
the I/O around it, written once per colour (blocking and async), and the unrolling is
:func:`~sse_batcher.server.client.unroll`'s.

Both generators hold an open connection: leave them with ``break`` (sync) or through
``contextlib.aclosing`` (async) so the connection is closed at once, not when collected.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext

import anyio
import httpx
from httpx_sse import aconnect_sse, connect_sse

from sse_batcher.server.client._resume import DEFAULT_RETRY_SECONDS, RECONNECT_ERRORS, Resume, StreamRefusedError
from sse_batcher.server.client.events import StreamEvent

__all__ = ["StreamRefusedError", "asubscribe", "subscribe"]


def _timeout(idle_timeout_seconds: float | None) -> httpx.Timeout:
    return httpx.Timeout(10.0, read=idle_timeout_seconds)


def subscribe(
    url: str,
    *,
    types: Sequence[str] | str | None = None,
    source: str | None = None,
    token: str | None = None,
    last_event_id: int | None = None,
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
    max_delay_seconds: float = 10.0,
    idle_timeout_seconds: float | None = 45.0,
    client: httpx.Client | None = None,
    snapshot: bool = False,
) -> Generator[StreamEvent, None, None]:
    """Yield every original event of the stream at ``url`` (e.g. ``http://host:8000/events``), forever.

    ``types`` and ``source`` are the server-side filters; ``token`` is sent as a bearer token;
    ``last_event_id`` resumes after that message; ``snapshot`` starts with the latest event of every
    open key (events flagged ``snapshot``), then goes on live. Reconnects on any network error, server error or
    end of stream. ``client`` (default: one of its own, closed at the end) lets you set transports,
    proxies or certificates; its read timeout is then yours.

    Raises:
        StreamRefusedError: the server refused the stream: 204, a redirect left unfollowed, a 4xx
            other than 408/425/429, or an answer that is not an event stream.
    """
    resume = Resume(types, source, token, last_event_id, retry_seconds, max_delay_seconds, snapshot)
    owned: AbstractContextManager[httpx.Client] = (
        httpx.Client(timeout=_timeout(idle_timeout_seconds), follow_redirects=True)
        if client is None
        else nullcontext(client)
    )
    with owned as http:
        while True:
            error: Exception | None = None
            try:
                with connect_sse(http, "GET", url, **resume.request()) as stream:
                    resume.opened(stream.response)
                    for message in stream.iter_sse():
                        yield from resume.take(message)
            except RECONNECT_ERRORS as exc:
                error = exc
            time.sleep(resume.delay_after(url, error))


async def asubscribe(
    url: str,
    *,
    types: Sequence[str] | str | None = None,
    source: str | None = None,
    token: str | None = None,
    last_event_id: int | None = None,
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
    max_delay_seconds: float = 10.0,
    idle_timeout_seconds: float | None = 45.0,
    client: httpx.AsyncClient | None = None,
    snapshot: bool = False,
) -> AsyncGenerator[StreamEvent, None]:
    """The async twin of :func:`subscribe`; leave it through ``contextlib.aclosing``.

    Raises:
        StreamRefusedError: the server refused the stream: 204, a redirect left unfollowed, a 4xx
            other than 408/425/429, or an answer that is not an event stream.
    """
    resume = Resume(types, source, token, last_event_id, retry_seconds, max_delay_seconds, snapshot)
    owned: AbstractAsyncContextManager[httpx.AsyncClient] = (
        httpx.AsyncClient(timeout=_timeout(idle_timeout_seconds), follow_redirects=True)
        if client is None
        else nullcontext(client)
    )
    async with owned as http:
        while True:
            error: Exception | None = None
            try:
                async with aconnect_sse(http, "GET", url, **resume.request()) as stream:
                    resume.opened(stream.response)
                    async for message in stream.aiter_sse():
                        for event in resume.take(message):
                            yield event
            except RECONNECT_ERRORS as exc:
                error = exc
            await anyio.sleep(resume.delay_after(url, error))
