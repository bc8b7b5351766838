"""The event model: what a worker emits, and the message that is stored and broadcast.

An :class:`Event` is validated and its ``data`` encoded to JSON once, at emit, on the caller's
thread. The encoded bytes are kept (``msgspec.Raw``) and spliced into every later encoding, so an
event is never encoded twice however many aggregates, rows or clients it reaches.
"""

from __future__ import annotations

import re
import time
from typing import Final, Literal

import msgspec

from sse_batcher.batcher.errors import EventValidationError

__all__ = [
    "CRITICAL",
    "NORMAL",
    "NUL_ESCAPE",
    "Event",
    "Message",
    "Priority",
    "StoredMessage",
    "check_idempotency_key",
    "check_key",
    "check_priority",
    "check_source",
    "check_type",
    "encode_data",
    "encode_json",
    "event_ts",
]

Priority = Literal["normal", "critical"]
NORMAL: Final = "normal"
CRITICAL: Final = "critical"

_TYPE_RE: Final = re.compile(r"[A-Z0-9_]{1,64}")
_SOURCE_RE: Final = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_MAX_KEY_CHARS: Final = 256
# PostgreSQL's jsonb refuses the NUL character; rejecting it at emit keeps one poisonous string
# from reaching the store at all (the store still isolates any row it refuses).
NUL_ESCAPE: Final = b"\\u0000"
_ENCODER: Final = msgspec.json.Encoder()
# msgspec encoders keep no state between calls, so one serves every thread.
encode_json: Final = _ENCODER.encode


class Event(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One validated event. ``seq`` is global and strictly increasing within a process."""

    type: str
    source: str
    seq: int
    ts: float
    data: msgspec.Raw
    priority: str = NORMAL
    key: str | None = None
    # False for events from a worker with use_batching=False: they travel alone, at once.
    batched: bool = True
    # A client's idempotency key: the event travels as a message of its own whose
    # storage key derives from it, so a retried publish stores nothing twice and finds the same id.
    idempotency_key: str | None = None


class Message(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A unit of storage and broadcast: a single event or the aggregate of a group.

    ``payload`` is exactly the JSON of the SSE ``data:`` line. ``event_type`` is the type of the
    original events (aggregates match filters by it). ``idem_key`` (the emitting process's nonce
    and the first seq, or ``k:`` and a client's idempotency key) is unique, so a retried write is
    skipped instead of stored twice. ``idem_digest`` is the digest of a keyed event's content,
    stored beside its key: the same key with other content is a conflict, not a retry ("" unkeyed).
    ``origin`` names the batcher run that made the message: seqs restart with every run, so an
    acknowledgement matches (origin, seq), and a dead-letter line written back by a later run
    answers none of that run's waiters. Empty in lines written before messages carried it.
    ``absorbed`` are the seqs of events the message stands for without carrying them (superseded
    by key or folded as identical), so their acknowledgements are answered with its id.
    ``event_keys`` and ``event_seqs`` are the ``key`` and ``seq`` of each event the payload
    carries, in its order, as the aggregator knew them: the latest state reads them instead of
    decoding the payload again. Empty when not known (none of the events has a key, or the message
    was read back from a file, which never carries them), and then the payload is what counts.
    """

    idem_key: str
    type: str
    event_type: str
    source: str
    event_count: int
    first_seq: int
    last_seq: int
    ts: float
    payload: bytes
    priority: str = NORMAL
    origin: str = ""
    absorbed: tuple[int, ...] = ()
    idem_digest: str = ""
    event_keys: tuple[str | None, ...] = ()
    event_seqs: tuple[int, ...] = ()


class StoredMessage(msgspec.Struct, frozen=True, gc=False):
    """A message as committed: ``id`` is its place in the deployment-wide order."""

    id: int
    type: str
    event_type: str
    source: str
    event_count: int
    payload: bytes
    created_at: float
    # Known right after a write (it maps a commit back to its batch); empty when read from the log.
    idem_key: str = ""


def event_ts() -> float:
    """Wall time in whole milliseconds: an event's ``ts``, stamped at emit.

    The full float repr costs four more bytes per event on the wire and in every stored row, for
    sub-millisecond precision nothing downstream reads. Integer arithmetic, because
    round(time.time(), 3) takes two and a half times as long (see bench/RESULTS.md, 'Bytes on the
    wire per event').
    """
    return time.time_ns() // 1_000_000 / 1000


def check_type(value: object) -> str:
    """Return ``value`` if it is a valid event type.

    Raises:
        EventValidationError: not 1-64 characters of A-Z, 0-9 and ``_``.
    """
    if isinstance(value, str) and _TYPE_RE.fullmatch(value):
        return value
    raise EventValidationError("type", f"must be 1-64 characters of A-Z, 0-9 and _, got {value!r:.80}")


def check_source(value: object) -> str:
    """Return ``value`` if it is a valid source (worker name).

    Raises:
        EventValidationError: not 1-64 characters of letters, digits, ``-``, ``_`` and ``.``.
    """
    if isinstance(value, str) and _SOURCE_RE.fullmatch(value):
        return value
    raise EventValidationError(
        "source", f"must be 1-64 characters of letters, digits, '-', '_' and '.', got {value!r:.80}"
    )


def check_priority(value: object) -> str:
    """Return ``value`` if it is ``"normal"`` or ``"critical"``.

    Raises:
        EventValidationError: anything else.
    """
    if value == NORMAL or value == CRITICAL:
        return value
    raise EventValidationError("priority", f"must be 'normal' or 'critical', got {value!r:.80}")


def check_key(value: object) -> str | None:
    """Return ``value`` if it is ``None`` or a string of 1-256 characters other than NUL.

    The key travels in the stored JSON, where PostgreSQL refuses NUL as it does in ``data``; let
    through, it would have the store refuse the whole message, and the other events in it.

    Raises:
        EventValidationError: anything else.
    """
    if value is None or (isinstance(value, str) and 0 < len(value) <= _MAX_KEY_CHARS and "\x00" not in value):
        return value
    raise EventValidationError("key", f"must be a string of 1-{_MAX_KEY_CHARS} characters, without NUL, or null")


_IDEMPOTENCY_KEY_RE: Final = re.compile(r"[\x21-\x7e]{1,200}")


def check_idempotency_key(value: object) -> str | None:
    """Return ``value`` if it is ``None`` or 1-200 printable ASCII characters without spaces.

    Raises:
        EventValidationError: anything else.
    """
    if value is None or (isinstance(value, str) and _IDEMPOTENCY_KEY_RE.fullmatch(value)):
        return value
    raise EventValidationError("idempotency_key", "must be 1-200 printable ASCII characters without spaces, or null")


def encode_data(data: object, max_bytes: int) -> bytes:
    """Encode ``data`` to JSON, checking that it is an object of at most ``max_bytes``.

    Raises:
        EventValidationError: not a dict, not JSON-encodable, too large, or holding a NUL character.
    """
    if not isinstance(data, dict):
        raise EventValidationError("data", f"must be a JSON object, got {type(data).__name__}")
    try:
        raw = _ENCODER.encode(data)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EventValidationError("data", f"must be JSON-encodable: {exc}") from None
    if len(raw) > max_bytes:
        raise EventValidationError("data", f"must encode to at most {max_bytes} bytes, got {len(raw)}")
    if NUL_ESCAPE in raw:
        raise EventValidationError("data", "must not contain the NUL character (\\u0000)")
    return raw
