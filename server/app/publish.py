"""POST /api/events: publish one event or a list of them, all or nothing.

Every status a client can cause is a 4xx or 503 with a JSON ``{"error": ...}`` body, never a 500:

- 401 publish token set, bearer missing or wrong; 415 not ``application/json``;
- 413 body over ``max_request_bytes`` (refused while reading) or more than ``max_request_events``
  (or than the rate limit's burst);
- 429 with ``Retry-After`` over the publish rate limit (the bucket is charged for the whole request
  before anything is emitted, and refunded when a later check refuses it);
- 400 malformed JSON; 422 a schema error, naming the event ``index`` and the ``field``;
- 503 with ``Retry-After`` when the buffer is full, when batches are held in memory because
  PostgreSQL and the dead-letter file both refuse writes, or when the server is shutting down.

``?wait=stored`` answers only once every event is committed: 201 ``{"accepted": n, "ids": [...]}``
(each event's message id; events of one aggregate share it). The events ride in ordinary batches,
so waiting costs the caller latency, not the server throughput. Not committed within
SSE_PUBLISH_WAIT_TIMEOUT_SECONDS: 504 ``{"error", "state", "kept", "ids"}``, where ``kept`` says
whether the events are safe on disk (the dead-letter file, stored once PostgreSQL answers), so a
retry with the same idempotency key stores nothing twice either way.

Idempotency: an event may carry ``idempotency_key``, or the request an ``Idempotency-Key`` header
(event ``i`` then gets ``<key>#<i>``). A keyed event is stored as a message of its own whose
storage key is the client's, so a retried publish stores nothing twice and answers the same ids,
on any node, for as long as the row is retained (SSE_RETENTION_SECONDS). Without ``wait``, 202 as soon
as the events are buffered: accepted but not yet committed events are lost on kill -9 or power loss.

An empty list is accepted (202, ``accepted: 0``): there is nothing wrong in it to refuse, and a
client that batches by time may well send one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.batcher import (
    AckTimeoutError,
    BatcherClosedError,
    BufferFullError,
    EventValidationError,
    StoreRejectedError,
)
from sse_batcher.batcher.events import check_idempotency_key
from sse_batcher.server._http import BodyError, check_json_content_type, decode_json, error, json_response, read_body
from sse_batcher.server.app.runtime import runtime_of
from sse_batcher.server.security.guard import guard_of

__all__ = ["publish_events"]


async def publish_events(request: Request) -> Response:
    """Emit the events of the body; 202 ``{"accepted": n, "seqs": [...]}`` or a JSON error."""
    runtime = runtime_of(request)
    config = runtime.config
    guard = guard_of(request)
    publisher = guard.publisher(request)
    if publisher is None:
        return error(401, "a valid publish token is required", {"WWW-Authenticate": "Bearer"})
    request_key = request.headers.get("idempotency-key")
    if request_key is not None:
        try:
            check_idempotency_key(request_key)
        except EventValidationError as exc:
            return error(400, f"Idempotency-Key {str(exc).split(': ', 1)[-1]}", field="Idempotency-Key")
    wait = request.query_params.get("wait")
    if wait not in (None, "stored"):
        return error(400, f"wait must be 'stored' (or absent), got {wait!r:.40}", field="wait")
    if not runtime.accepting:
        return error(503, "the server is shutting down", {"Retry-After": "1"})
    try:
        check_json_content_type(request)
        decoded = decode_json(await read_body(request, config.max_request_bytes))
    except BodyError as exc:
        return error(exc.status, str(exc))
    events: list[Any]
    if isinstance(decoded, dict):
        events = [decoded]
    elif isinstance(decoded, list):
        events = decoded
    else:
        return error(422, "the body must be an event object or a list of event objects", field="body")
    if len(events) > config.max_request_events:
        return error(413, f"at most {config.max_request_events} events per request, got {len(events)}")
    if not events:
        return (
            json_response({"accepted": 0, "ids": []}, 201) if wait else json_response({"accepted": 0, "seqs": []}, 202)
        )
    # A drain may have begun while the body was read: an event accepted now might miss the
    # final flush that connected streams are given.
    if not runtime.accepting:
        return error(503, "the server is shutting down", {"Retry-After": "1"})
    refused = guard.charge(publisher, len(events))
    if refused is not None:
        return refused
    seqs: list[int] | None = None
    try:
        if wait:
            ids = await runtime.batcher.publish(
                events, timeout=config.publish_wait_timeout_seconds, idempotency_key=request_key
            )
            return json_response({"accepted": len(ids), "ids": ids}, 201)
        seqs = runtime.batcher.emit_many(events, idempotency_key=request_key)
    except EventValidationError as exc:
        index = exc.index
        return error(422, f"event {index}: {exc}" if index is not None else str(exc), index=index, field=exc.field)
    except AckTimeoutError as exc:
        return error(504, str(exc), state=exc.state, kept=exc.kept, ids=exc.ids)
    except StoreRejectedError as exc:
        return error(422, str(exc), field="data")
    except BufferFullError:
        if runtime.batcher.statistics().dead_letter_error is not None:
            # Held batches stop intake: say so, without the path (that is /healthz's to show).
            reason = "PostgreSQL and the dead-letter file both refuse writes, so no event can be kept safe"
            return error(503, f"{reason}; retry shortly", {"Retry-After": "1"})
        return error(503, "the event buffer is full; retry shortly", {"Retry-After": "1"})
    except BatcherClosedError:
        return error(503, "the server is shutting down", {"Retry-After": "1"})
    finally:
        if seqs is None:
            guard.refund(publisher, len(events))  # nothing of it was stored
    return json_response({"accepted": len(seqs), "seqs": seqs}, 202)
