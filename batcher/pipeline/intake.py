"""Intake: the one place an event is checked and encoded, for emit() and emit_many() alike.

Validation happens at once, on the caller's thread, so a bad event is refused where it was made,
with the field and the rule (:class:`~sse_batcher.batcher.errors.EventValidationError`), and nothing is changed.
Names seen valid before are cached (bounded), so the common case costs two set lookups; emit()
inlines that lookup and calls :meth:`Intake.check` only on a miss, because a method call per emit is
measurable at half a million emits a second (bench/emit.py).

Next hop: the validated items go into the buffer (``buffer.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sse_batcher.batcher.errors import EventValidationError
from sse_batcher.batcher.events import (
    NORMAL,
    NUL_ESCAPE,
    check_idempotency_key,
    check_key,
    check_priority,
    check_source,
    check_type,
    encode_data,
    encode_json,
)

__all__ = ["EVENT_FIELDS", "Intake", "Item", "request_scoped_key"]

# How many distinct types/sources the validation cache remembers; past this, validate each time,
# so a client sending endless new names costs CPU but never memory.
_NAME_CACHE_LIMIT: Final = 4096

EVENT_FIELDS: Final = frozenset({"type", "data", "source", "priority", "key", "idempotency_key"})

# What the buffer takes: (type, source, data, priority, key, batched, urgent, idempotency_key).
Item = tuple[str, str, bytes, str, str | None, bool, bool, str | None]


def request_scoped_key(own: Any, request_key: str | None, index: int) -> Any:
    """An event's idempotency key: its own, else ``<request_key>#<index>`` from the request's header."""
    if own is None and request_key is not None:
        return f"{request_key}#{index}"
    return own


class Intake:
    """Validate and encode events; ``known_types`` and ``known_sources`` are the (bounded) name cache."""

    def __init__(self, *, default_source: str, max_event_bytes: int, batching: bool, unbatched: frozenset[str]) -> None:
        self.default_source = default_source
        self.max_event_bytes = max_event_bytes
        self.batching = batching
        self.unbatched = unbatched
        self.known_types: set[str] = set()
        self.known_sources: set[str] = set()

    def check_names(self, type_: object, source: object) -> None:
        """Validate ``type_`` and ``source``; names seen valid before cost two set lookups.

        Raises:
            EventValidationError: either breaks its rule (an unhashable value included).
        """
        try:
            if type_ in self.known_types and source in self.known_sources:
                return
        except TypeError:  # unhashable (a list, say): not a name; the checks below say why
            pass
        check_type(type_)
        check_source(source)
        if len(self.known_types) < _NAME_CACHE_LIMIT:
            self.known_types.add(type_)  # type: ignore[arg-type]
        if len(self.known_sources) < _NAME_CACHE_LIMIT:
            self.known_sources.add(source)  # type: ignore[arg-type]

    def encode(self, data: object) -> bytes:
        """Encode ``data``: a JSON object of at most ``max_event_bytes``, without NUL.

        Raises:
            EventValidationError: it is not.
        """
        if data.__class__ is dict:
            try:
                raw = encode_json(data)
            except (TypeError, ValueError, OverflowError, RecursionError):
                pass  # the slow path below says why
            else:
                if len(raw) <= self.max_event_bytes and NUL_ESCAPE not in raw:
                    return raw
        return encode_data(data, self.max_event_bytes)

    def check(self, type_: object, data: object, source: object, priority: object, key: object) -> bytes:
        """Check one event's fields and return its encoded ``data``.

        Raises:
            EventValidationError: a field broke its rule.
        """
        self.check_names(type_, source)
        if priority is not NORMAL and priority != NORMAL:
            check_priority(priority)
        if key is not None:
            check_key(key)
        return self.encode(data)

    def items(
        self, events: Sequence[Any], default_source: str | None = None, request_key: str | None = None
    ) -> list[Item]:
        """Check a list of ``{"type", "data", "source"?, "priority"?, "key"?, "idempotency_key"?}``, all or nothing.

        ``request_key`` (an ``Idempotency-Key`` header) gives event ``i`` without a key of its own
        the key ``<request_key>#<i>``.

        Raises:
            EventValidationError: an event is invalid; its ``index`` names which.
        """
        fallback = default_source or self.default_source
        items: list[Item] = []
        for index, event in enumerate(events):
            try:
                if not isinstance(event, dict):
                    raise EventValidationError("event", "must be a JSON object")
                unknown = event.keys() - EVENT_FIELDS
                if unknown:
                    raise EventValidationError(sorted(unknown)[0], "is not a known event field")
                if "type" not in event:
                    raise EventValidationError("type", "is required")
                if "data" not in event:
                    raise EventValidationError("data", "is required")
                # An explicit null means "not given", as it does for ``key`` and for emit(source=None).
                source = event.get("source")
                if source is None:
                    source = fallback
                priority = event.get("priority", NORMAL)
                key = event.get("key")
                raw = self.check(event["type"], event["data"], source, priority, key)
                idem = check_idempotency_key(request_scoped_key(event.get("idempotency_key"), request_key, index))
            except EventValidationError as exc:
                raise EventValidationError(exc.field, str(exc).split(": ", 1)[-1], index=index) from None
            type_ = event["type"]
            items.append((type_, source, raw, priority, key, self.batching, type_ in self.unbatched, idem))
        return items
