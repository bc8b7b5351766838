"""Group shaping: what a type's rule does to the events of one group before they become messages.

The aggregation (:mod:`sse_batcher.batcher.pipeline.aggregate`) groups a flush by ``(source,
type)``; this is the one step where a rule's ``coalesce``, ``group_identical`` and
``max_group_size`` act. It is apart from the rule set so the flush path imports the shaping
alone, and a reader finds in one place every way a rule can change what a client receives.
"""

from __future__ import annotations

from dataclasses import dataclass

from sse_batcher.batcher.events import Event
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["GroupPart", "shape_group"]


@dataclass(frozen=True, slots=True)
class GroupPart:
    """One message's worth of a group after its rule: the events kept, their counts, what was dropped."""

    events: list[Event]
    counts: list[int] | None
    superseded: int

    @property
    def event_count(self) -> int:
        """How many original events this part stands for (superseded ones excluded)."""
        return len(self.events) if self.counts is None else sum(self.counts)


def shape_group(events: list[Event], rule: TypeRule) -> list[GroupPart]:
    """Apply ``rule`` to the events of one ``(source, type)`` group of one flush, in seq order.

    Key coalescing keeps each key's latest event, where it stood; events without a key are all
    kept. Identical grouping then folds events with byte-identical data into the first of them,
    with a count. Last, the group is cut into parts of at most ``max_group_size``; the superseded
    count goes with the first part, so it is reported once.
    """
    superseded = 0
    if rule.coalesce == "key":
        latest = {event.key: index for index, event in enumerate(events) if event.key is not None}
        kept = [event for index, event in enumerate(events) if event.key is None or latest[event.key] == index]
        superseded = len(events) - len(kept)
        events = kept
    counts: list[int] | None = None
    if rule.group_identical:
        first_of: dict[bytes, int] = {}
        unique: list[Event] = []
        counts = []
        for event in events:
            data = bytes(event.data)
            index = first_of.get(data)
            if index is None:
                first_of[data] = len(unique)
                unique.append(event)
                counts.append(1)
            else:
                counts[index] += 1
        events = unique
    size = rule.max_group_size or len(events) or 1
    return [
        GroupPart(events[i : i + size], None if counts is None else counts[i : i + size], superseded if i == 0 else 0)
        for i in range(0, len(events), size)
    ]
