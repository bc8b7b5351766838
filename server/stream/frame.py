"""The SSE bytes of the fan-out: a message encoded once, and a frame of messages joined once.

Kept apart from the hub because the same encoding serves live fan-out and replay from the store,
and a frame is what a subscriber's queue holds, so both the hub and the subscriber use it.

A :class:`Frame` is the SSE bytes of one or more consecutive messages, joined once and shared by
every subscriber with the same filters, with the ids and offsets of the messages inside, so a
subscriber that resumes in the middle of a frame can skip what it had.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from sse_batcher.batcher import StoredMessage

__all__ = ["Frame", "encode_message", "frame_of"]


def encode_message(message: StoredMessage) -> bytes:
    """Return the SSE bytes of ``message``: ``id``, ``event`` and one ``data`` line.

    The payload is JSON from PostgreSQL's jsonb rendering, which escapes newlines, so one ``data:``
    line is exact.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (message.id, message.type.encode(), message.payload)


@dataclass(frozen=True, slots=True)
class Frame:
    """Consecutive SSE messages as one bytes object; ``offsets[i]`` is where message ``ids[i]`` starts."""

    ids: tuple[int, ...]
    offsets: tuple[int, ...]
    data: bytes

    @property
    def first_id(self) -> int:
        return self.ids[0]

    @property
    def last_id(self) -> int:
        return self.ids[-1]

    def after(self, floor: int | None) -> tuple[bytes, int]:
        """The bytes of the messages with id > ``floor``, and how many they are."""
        if floor is None or self.ids[0] > floor:
            return self.data, len(self.ids)
        start = bisect.bisect_right(self.ids, floor)
        if start == len(self.ids):
            return b"", 0
        return self.data[self.offsets[start] :], len(self.ids) - start


def frame_of(encoded: Sequence[tuple[int, bytes]]) -> Frame:
    """Join ``(id, bytes)`` pairs, in id order, into one frame."""
    sizes = [len(data) for _, data in encoded]
    return Frame(
        ids=tuple(message_id for message_id, _ in encoded),
        offsets=(0, *accumulate(sizes[:-1])),
        data=encoded[0][1] if len(encoded) == 1 else b"".join([data for _, data in encoded]),
    )
