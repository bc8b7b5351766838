"""Intake: the one place an event is checked and encoded, for every emit path alike.

Validation happens at once, on the caller's thread, so a bad event is refused where it was made,
with the field and the rule (:class:`~sse_batcher.batcher.errors.EventValidationError`), and nothing is changed.
:meth:`Intake.item` is the hot path of ``emit()``: names seen valid before are cached (bounded), so
a typical event costs two set lookups, one JSON encode and the building of one tuple; the checks
that say why an event is refused run only on a cache miss or a refusal. The fast path is written out
inside that one method because each further call per emit is measurable at half a million emits a
second (see bench/RESULTS.md, 'Emit throughput').

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

# What the buffer takes (EventBuffer.put_item, put_many):
# (type, source, data, priority, key, batched, urgent, idempotency_key).
Item = tuple[str, str, bytes, str, str | None, bool, bool, str | None]


def request_scoped_key(own: Any, request_key: str | None, index: int) -> Any:
    """An event's idempotency key: its own, else ``<request_key>#<index>`` from the request's header."""
    if own is None and request_key is not None:
        return f"{request_key}#{index}"
    return own


class Intake:
    """Validate and encode events into buffer items; ``known_types`` and ``known_sources`` are the name cache.

    ``batching`` False (this batcher's config) sends every event around the batches; a type in
    ``unbatched`` (the rules) leaves at once, but in order with the events before it.
    """

    __slots__ = ("batching", "default_source", "known_sources", "known_types", "max_event_bytes", "unbatched")

    def __init__(self, *, default_source: str, max_event_bytes: int, batching: bool, unbatched: frozenset[str]) -> None:
        self.default_source = default_source
        self.max_event_bytes = max_event_bytes
        self.batching = batching
        self.unbatched = unbatched
        self.known_types: set[str] = set()
        self.known_sources: set[str] = set()

    def item(
        self, type_: Any, data: Any, source: Any = None, priority: Any = NORMAL, key: Any = None, batched: bool = True
    ) -> Item:
        """Check one event and return it as a buffer :data:`Item`; ``source`` None is the default source.

        ``data`` must be a JSON object of at most ``max_event_bytes`` once encoded, without NUL.
        The names of an event that passes are remembered (while the cache has room).

        Raises:
            EventValidationError: a field broke its rule; nothing was changed, the cache included.
        """
        if source is None:
            source = self.default_source
        try:
            known = type_ in self.known_types and source in self.known_sources
        except TypeError:  # unhashable (a list, say): not a name; the checks below say why
            known = False
        if not known:
            check_type(type_)
            check_source(source)
        if priority != NORMAL:
            check_priority(priority)
        if key is not None:
            check_key(key)
        raw = None
        if data.__class__ is dict:
            try:
                raw = encode_json(data)
            except (TypeError, ValueError, OverflowError, RecursionError):
                pass  # encode_data below says why
        if raw is None or len(raw) > self.max_event_bytes or NUL_ESCAPE in raw:
            raw = encode_data(data, self.max_event_bytes)  # raises the error that says why
        if not known:
            self._remember(type_, source)
        return (type_, source, raw, priority, key, batched and self.batching, type_ in self.unbatched, None)

    def _remember(self, type_: str, source: str) -> None:
        if len(self.known_types) < _NAME_CACHE_LIMIT:
            self.known_types.add(type_)
        if len(self.known_sources) < _NAME_CACHE_LIMIT:
            self.known_sources.add(source)

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
                item = self.item(event["type"], event["data"], source, event.get("priority", NORMAL), event.get("key"))
                # Checked last: an event wrong in several fields is refused for the first of them.
                idem = check_idempotency_key(request_scoped_key(event.get("idempotency_key"), request_key, index))
            except EventValidationError as exc:
                raise EventValidationError(exc.field, str(exc).split(": ", 1)[-1], index=index) from None
            items.append(item[:7] + (idem,))
        return items
