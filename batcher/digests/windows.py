"""Digest windows: which window an event belongs to, and what a window counts and keeps.

Pure logic, no I/O: the :class:`~sse_batcher.batcher.digests.digester.Digester` reads the stored
rows, feeds them through a :class:`WindowBook` and writes the windows and the digests back, all in
PostgreSQL.

- A window belongs to one ``(type, source, group)`` key and spans ``[start, end)`` in epoch
  milliseconds of the events' own ``ts`` (the emit time, wall clock: "every 15 minutes on the
  clock" is a wall-clock idea). ``align = "clock"`` starts windows at multiples of the length;
  ``align = "first"`` starts one at the first event that finds no window open.
- A window keeps ``count``, the message ids it covers (``first_id``, ``last_id``) and at most
  ``max_items`` events (the oldest, or the newest), so closing a 24-hour window reads one row,
  not a day of messages.
- An event whose window was already closed (stored later than the close grace, e.g. from a
  dead-letter file written back after an outage) goes into the next window of its key: late,
  never lost, never counted twice.
- Critical events bypass digests, as they bypass batching (:mod:`.items` leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sse_batcher.batcher.digests.items import DigestItem, items_of
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["DigestKey", "Window", "WindowBook", "window_bounds"]

# (event_type, source, group); group is "" when the rule has no group_by (or the field is absent).
DigestKey = tuple[str, str, str]


@dataclass(slots=True, kw_only=True)
class Window:
    """One digest window as stored in ``sse_digest_windows``; ``dirty`` once changed in this pass."""

    start_ms: int
    end_ms: int
    first_id: int
    last_id: int
    count: int = 0
    items: list[bytes] = field(default_factory=list)
    closed: bool = False
    dirty: bool = False

    def add(self, message_id: int, item: DigestItem, rule: TypeRule) -> None:
        """Count ``item`` in, and keep it if the rule's ``max_items`` and ``keep`` say so."""
        self.first_id = min(self.first_id, message_id)
        self.last_id = max(self.last_id, message_id)
        self.count += item.count
        if len(self.items) < rule.max_items:
            self.items.append(item.item)
        elif rule.keep == "newest":
            del self.items[0]
            self.items.append(item.item)
        self.dirty = True

    @property
    def truncated(self) -> bool:
        """True when the window holds more events than it keeps."""
        return self.count > len(self.items)


def window_bounds(rule: TypeRule, ts_ms: int, windows: Sequence[Window]) -> Window | tuple[int, int]:
    """The open window ``ts_ms`` falls in among one key's ``windows``, or the bounds of a new one.

    A time inside a closed window moves on to that window's end: the event is late, and goes into
    the next window. ``align = "first"`` never lets a new window overlap a later one.
    """
    if rule.digest_seconds is None:
        raise ValueError("window_bounds needs a digest rule")
    length = max(1, round(rule.digest_seconds * 1000))
    t = ts_ms
    while True:
        inside = next((w for w in windows if w.start_ms <= t < w.end_ms), None)
        if inside is None:
            break
        if not inside.closed:
            return inside
        t = inside.end_ms
    if rule.align == "clock":
        start = t - t % length
        return start, start + length
    later = [w.start_ms for w in windows if w.start_ms > t]
    return t, min([t + length, *later])


class WindowBook:
    """The windows one pass of the digester touches, by key; it adds events and says what changed."""

    def __init__(self, rules: Mapping[str, TypeRule]) -> None:
        self._rules = rules
        self._windows: dict[DigestKey, list[Window]] = {}

    def load(self, key: DigestKey, window: Window) -> None:
        """Make a window already stored known (before any :meth:`add`)."""
        self._windows.setdefault(key, []).append(window)

    def add(self, event_type: str, source: str, message_id: int, payload: bytes) -> int:
        """Put the events of one stored message into their windows; return how many were digested.

        Raises:
            msgspec.DecodeError: ``payload`` is not a message of this wire format.
        """
        rule = self._rules[event_type]
        added = 0
        for item in items_of(message_id, payload, rule.group_by):
            windows = self._windows.setdefault((event_type, source, item.group), [])
            found = window_bounds(rule, item.ts_ms, windows)
            if isinstance(found, tuple):
                found = Window(start_ms=found[0], end_ms=found[1], first_id=message_id, last_id=message_id)
                windows.append(found)
            found.add(message_id, item, rule)
            added += item.count
        return added

    def changed(self) -> Iterator[tuple[DigestKey, Window]]:
        """Every window an :meth:`add` changed or opened."""
        for key, windows in self._windows.items():
            for window in windows:
                if window.dirty:
                    yield key, window
