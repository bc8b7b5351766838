"""POST /api/events: publish one event or a list of them, all or nothing.

Every status a client can cause is a 4xx or 503 with a JSON ``{"error": ...}`` body, never a 500:

- 401 publish token set, bearer missing or wrong; 415 not ``application/json``;
- 413 body over ``max_request_bytes`` (refused while reading) or more than ``max_request_events``
  (or than the rate limit's burst);
- 429 with ``Retry-After`` over the publish rate limit (the bucket is charged for the whole request
  before anything is emitted, with or without ``wait``, and refunded only when the request is then
  refused whole: a schema 422, or a 503 for a full buffer or a shutdown; a 201, 202, 504 or a
  PostgreSQL refusal is not refunded);
- 400 malformed JSON; 422 a schema error, naming the event ``index`` and the ``field``;
- 409 an idempotency key this publisher used before for other content (see below);
- 503 with ``Retry-After`` when the buffer is full, when batches are held in memory because
  PostgreSQL and the dead-letter file both refuse writes, or when the server is shutting down.

``?wait=stored`` answers only once every event is committed: 201 ``{"accepted": n, "ids": [...]}``
(each event's message id; events of one aggregate share it). The events ride in ordinary batches,
so waiting costs the caller latency, not the server throughput. Not committed within
SSE_PUBLISH_WAIT_TIMEOUT_SECONDS, or by the end of a shutdown's drain (answered then, before uvicorn
would cancel the request): 504 ``{"error", "state", "kept", "ids"}``, where ``kept`` says
whether the events are safe on disk (the dead-letter file, stored once PostgreSQL answers), so a
retry with the same idempotency key stores nothing twice either way.

Idempotency: an event may carry ``idempotency_key``, or the request an ``Idempotency-Key`` header
(event ``i`` then gets ``<key>#<i>``). A keyed event is stored as a message of its own whose
storage key is the client's, so a retried publish stores nothing twice and answers the same ids,
on any node, for as long as the row is retained (SSE_RETENTION_SECONDS). Keys are scoped per
publisher (its token's digest; its address when publishing is open), so no publisher can claim
another's key, and kept beside the row, never in the payload subscribers read. The same key with
other content (type, source, data, priority, key) is refused with 409 naming the event's ``index``
and key, nothing of the request emitted, when the first is stored already; when the two race
before either is stored, the write finds it: 409 with ``?wait=stored``, and without ``wait`` (the
202 already sent) the event is left out with a warning in the log. Without ``wait``, 202 as soon
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
    StoreError,
    StoreRejectedError,
)
from sse_batcher.batcher.errors import IdempotencyConflictError
from sse_batcher.batcher.events import check_idempotency_key
from sse_batcher.server._http import BodyError, error, json_response, publish_token_required, read_json, shutting_down
from sse_batcher.server.app._keys import ScopedKeys
from sse_batcher.server.app.runtime import runtime_of
from sse_batcher.server.security.guard import guard_of

__all__ = ["publish_events"]


def _conflict(index: int | None, key: str) -> Response:
    message = f"idempotency key {key!r:.220} was used before for other content; send a new key"
    return error(409, f"event {index}: {message}", index=index, field="idempotency_key")


async def publish_events(request: Request) -> Response:
    """Emit the events of the body; 202 ``{"accepted": n, "seqs": [...]}`` or a JSON error."""
    runtime = runtime_of(request)
    config = runtime.config
    guard = guard_of(request)
    publisher = guard.publisher(request)
    if publisher is None:
        return publish_token_required()
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
        return shutting_down()
    try:
        decoded = await read_json(request, config.max_request_bytes)
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
    refused = guard.charge(publisher, len(events))
    if refused is not None:
        return refused
    keys = ScopedKeys(events, request_key, publisher)
    events = keys.events
    try:
        conflict = await keys.stored_conflict(runtime.store, config.batcher.default_source)
    except (StoreError, BatcherClosedError):
        conflict = None  # unknown for now: the write finds it (a 409 with wait, a warning without)
    if conflict is not None:
        guard.refund(publisher, len(events))  # refused whole
        return _conflict(*conflict)
    # A drain may have begun while the body was read: an event accepted now might miss the
    # final flush that connected streams are given.
    if not runtime.accepting:
        guard.refund(publisher, len(events))
        return shutting_down()
    # Refunded only when the request is refused whole; one that reached the pipeline (committed,
    # timed out, refused by PostgreSQL) used the capacity the limit protects.
    refused_whole = True
    try:
        if wait:
            ids = await runtime.batcher.publish(events, timeout=config.publish_wait_timeout_seconds)
            refused_whole = False
            return json_response({"accepted": len(ids), "ids": ids}, 201)
        seqs = runtime.batcher.emit_many(events)
        refused_whole = False
        return json_response({"accepted": len(seqs), "seqs": seqs}, 202)
    except EventValidationError as exc:
        index = exc.index
        return error(422, f"event {index}: {exc}" if index is not None else str(exc), index=index, field=exc.field)
    except AckTimeoutError as exc:
        refused_whole = False
        return error(504, str(exc), state=exc.state, kept=exc.kept, ids=exc.ids)
    except IdempotencyConflictError as exc:
        refused_whole = False
        return _conflict(*keys.named(exc.idem_key))
    except StoreRejectedError as exc:
        refused_whole = False
        return error(422, str(exc), field="data")
    except BufferFullError:
        if runtime.batcher.statistics().dead_letter_error is not None:
            # Held batches stop intake: say so, without the path (that is /healthz's to show).
            reason = "PostgreSQL and the dead-letter file both refuse writes, so no event can be kept safe"
            return error(503, f"{reason}; retry shortly", {"Retry-After": "1"})
        return error(503, "the event buffer is full; retry shortly", {"Retry-After": "1"})
    except BatcherClosedError:
        return shutting_down()
    finally:
        if refused_whole:
            guard.refund(publisher, len(events))
