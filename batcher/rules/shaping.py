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
    """One message's worth of a group after its rule: the events kept, their counts, what was dropped.

    ``absorbed`` are the seqs of the events this part stands for without carrying them (superseded
    by a later event of the same key, or folded into an identical one): their acknowledgements are
    answered with this part's message, whose seq range need not hold them.
    """

    events: list[Event]
    counts: list[int] | None
    superseded: int
    absorbed: tuple[int, ...] = ()

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
    absorbed: dict[int, list[int]] = {}  # seq of a kept event -> seqs of the events it stands for
    if rule.coalesce == "key":
        latest = {event.key: index for index, event in enumerate(events) if event.key is not None}
        kept = []
        for position, event in enumerate(events):
            if event.key is None or latest[event.key] == position:
                kept.append(event)
            else:
                absorbed.setdefault(events[latest[event.key]].seq, []).append(event.seq)
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
                into = absorbed.setdefault(unique[index].seq, [])
                into.append(event.seq)
                into.extend(absorbed.pop(event.seq, ()))
        events = unique
    size = rule.max_group_size or len(events) or 1
    return [
        GroupPart(
            events[i : i + size],
            None if counts is None else counts[i : i + size],
            superseded if i == 0 else 0,
            tuple(sorted(s for e in events[i : i + size] for s in absorbed.get(e.seq, ()))),
        )
        for i in range(0, len(events), size)
    ]
