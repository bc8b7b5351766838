"""GET /events: who may stream, with which filters, and from where; then the hub's response.

The endpoint checks the request and resolves its resume point, opens a subscriber in the hub, and
hands both to :class:`~sse_batcher.server.stream.response.HubStreamResponse`, which writes the
hub's ready-made bytes to the socket. Pings (``: ping`` every ``ping_seconds``) and the send timeout
(a peer that accepts nothing for ``client_send_timeout_seconds`` is dropped) are done by the hub's
one housekeeping task.

Security hooks, kept apart so they port to any stream implementation: :func:`stream_events` asks
the app's :class:`sse_batcher.server.security.guard.Guard` for the credential (a stream token's filters narrow the
request's), takes a per-address slot that the response's ``finally`` gives back (``on_close``), and
hands the response a lifetime (``expires_after``) after which its body ends cleanly, and, for a
subscribe token from a tokens file, a check (``still_allowed``) that ends the stream once the token
is removed from the file.

The last hop of the data flow: hub -> subscriber queue -> the response -> the socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.batcher import EventValidationError, StoreError
from sse_batcher.batcher.events import check_source, check_type
from sse_batcher.server._http import error, shutting_down
from sse_batcher.server.app.runtime import Runtime, runtime_of
from sse_batcher.server.security.guard import NotAllowed, guard_of
from sse_batcher.server.security.tokens import InvalidStreamToken, StreamGrant
from sse_batcher.server.stream.hub import HubClosedError, HubFullError
from sse_batcher.server.stream.response import HubStreamResponse
from sse_batcher.server.stream.snapshot import parse_snapshot_flag, state_snapshot

__all__ = [
    "BadStreamRequest",
    "Subscription",
    "parse_last_event_id",
    "read_subscription",
    "request_filters",
    "stream_events",
    "wants_snapshot",
]

# Ids are PostgreSQL bigints.
_MAX_ID = 2**63 - 1


class BadStreamRequest(ValueError):
    """A query parameter or header of GET /events is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_last_event_id(value: str) -> int:
    """Return a Last-Event-ID as an int.

    Raises:
        BadStreamRequest: not a non-negative integer that fits a bigint.
    """
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > _MAX_ID:
        raise BadStreamRequest("last_event_id", f"Last-Event-ID must be a non-negative integer, got {value!r:.40}")
    return int(text)


class _Malformed:
    """A Last-Event-ID that is not an id: the stream starts as for an id out of range."""


_MALFORMED: Final = _Malformed()


def _last_event_id(request: Request) -> int | _Malformed | None:
    # The header wins: a reconnecting EventSource keeps the URL it started with (and so any
    # ?last_event_id= in it) but sends the id it actually got last in the header.
    value = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if not value:
        return None
    try:
        return parse_last_event_id(value)
    except BadStreamRequest:
        # Not a 400: EventSource stops reconnecting for good on any 4xx, so a browser that stored a
        # bad id (or a proxy that mangled it) would never stream again.
        return _MALFORMED


def _names(request: Request, param: str, check: Callable[[object], str]) -> frozenset[str] | None:
    values = [value for value in request.query_params.getlist(param) if value]
    if not values:
        return None
    names: set[str] = set()
    for value in values:
        for name in value.split(","):
            try:
                names.add(check(name.strip()))
            except EventValidationError as exc:
                raise BadStreamRequest(param, f"{param}: {str(exc).split(': ', 1)[-1]}") from None
    return frozenset(names)


def request_filters(request: Request) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """The request's ``types`` and ``source`` filters (None: not filtered).

    Raises:
        BadStreamRequest: a name is invalid.
    """
    return _names(request, "types", check_type), _names(request, "source", check_source)


def wants_snapshot(request: Request) -> bool:
    """True when the request asks to start with the latest state (``snapshot=1``).

    Raises:
        BadStreamRequest: the value is not a flag.
    """
    try:
        return parse_snapshot_flag(request.query_params.get("snapshot"))
    except ValueError as exc:
        raise BadStreamRequest("snapshot", str(exc)) from None


@dataclass(frozen=True, slots=True)
class Subscription:
    """Who reads and what: the credential's grant, the filters it narrowed, and the snapshot flag."""

    grant: StreamGrant | None
    types: frozenset[str] | None
    sources: frozenset[str] | None
    snapshot: bool = False


def read_subscription(request: Request, *, snapshot_flag: bool = False) -> Subscription | Response:
    """The subscription a read endpoint (``/events``, ``/api/state``) serves, or the JSON error to answer.

    In this order: 401 without a valid credential, 400 for a bad filter (or, with
    ``snapshot_flag``, a bad ``snapshot``), 403 for a filter the credential's grant leaves out.
    """
    guard = guard_of(request)
    try:
        grant = guard.subscriber(request)
    except InvalidStreamToken as exc:
        return error(401, str(exc), {"WWW-Authenticate": "Bearer"})
    try:
        types, sources = request_filters(request)
        snapshot = wants_snapshot(request) if snapshot_flag else False
    except BadStreamRequest as exc:
        return error(400, str(exc), field=exc.field)
    try:
        types, sources = guard.narrow(grant, types, sources)
    except NotAllowed as exc:
        return error(403, str(exc), field=exc.field)
    return Subscription(grant, types, sources, snapshot)


def _truncated(first_available_id: int | None, last_event_id: int | None) -> bytes:
    data = msgspec.json.encode(
        {"type": "HISTORY_TRUNCATED", "first_available_id": first_available_id, "last_event_id": last_event_id}
    )
    return b"event: HISTORY_TRUNCATED\ndata: %s\n\n" % data


async def _resume_point(runtime: Runtime, last_event_id: int | _Malformed | None) -> tuple[bytes, int | None]:
    """Return what to send before any message, and the id to replay after (None: live only).

    Raises:
        StoreError: the store could not say what it holds.
    """
    if last_event_id is None:
        return b"", None
    first, last = await runtime.store.bounds()
    if isinstance(last_event_id, _Malformed):
        # Start live, from the newest stored message, after saying so (``last_event_id``: null).
        return _truncated(first, None), last or 0
    if last is None or last_event_id > last:
        if last is None and last_event_id == 0:
            return b"", 0  # nothing stored, nothing missed
        # The id is newer than anything stored: the database was reset (or retention emptied it).
        # Start live, from the newest stored message, after saying so.
        return _truncated(first, last_event_id), last or 0
    if first is not None and first > last_event_id + 1:
        return _truncated(first, last_event_id), last_event_id
    return b"", last_event_id


async def stream_events(request: Request) -> Response:
    """GET /events: 200 text/event-stream, or a JSON error (400, 401, 403, 429, 503)."""
    runtime = runtime_of(request)
    guard = guard_of(request)
    asked = read_subscription(request, snapshot_flag=True)
    if isinstance(asked, Response):
        return asked
    grant, types, sources = asked.grant, asked.types, asked.sources
    last_event_id = _last_event_id(request)
    # A resume goes on from its Last-Event-ID; only a fresh stream starts from the state.
    snapshot = asked.snapshot and last_event_id is None
    if not runtime.accepting:
        return shutting_down()
    release_slot = guard.stream_slot(request)
    if release_slot is None:
        return error(429, "too many open streams from this address", {"Retry-After": "5"})
    try:
        lifetime = guard.stream_lifetime(grant)
        still_allowed = guard.still_subscribed(request)
        response = await _open_stream(
            runtime, types, sources, last_event_id, lifetime, release_slot, snapshot, still_allowed=still_allowed
        )
    except BaseException:
        release_slot()
        raise
    if not isinstance(response, HubStreamResponse):
        release_slot()  # refused: no stream holds the slot
    return response


async def _open_stream(
    runtime: Runtime,
    types: frozenset[str] | None,
    sources: frozenset[str] | None,
    last_event_id: int | _Malformed | None,
    expires_after: float | None,
    on_close: Callable[[], None],
    snapshot: bool = False,
    *,
    still_allowed: Callable[[], bool] | None = None,
) -> Response:
    config = runtime.config
    try:
        client = runtime.hub.open(types, sources)
    except HubFullError as exc:
        return error(503, str(exc), {"Retry-After": "5"})
    except HubClosedError as exc:
        return error(503, str(exc), {"Retry-After": "1"})
    after_id: int | None
    try:
        if snapshot:
            extra, after_id = await state_snapshot(runtime.store, types, sources)
        else:
            extra, after_id = await _resume_point(runtime, last_event_id)
    except StoreError as exc:
        runtime.hub.release(client)
        return error(503, f"the store is unavailable: {exc}", {"Retry-After": "1"})
    except BaseException:
        runtime.hub.release(client)
        raise
    # retry: is a hint the browser keeps: sent once, first.
    prelude = b"retry: %d\n\n" % config.retry_milliseconds + extra
    return HubStreamResponse(
        runtime.hub, client, prelude, after_id, expires_after=expires_after, on_close=on_close,
        still_allowed=still_allowed,
    )  # fmt: skip
