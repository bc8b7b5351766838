"""Digest windows without a database: which window an event falls in, what a window keeps."""

from __future__ import annotations

import msgspec
import pytest

from sse_batcher.batcher import TypeRule
from sse_batcher.batcher.digests.windows import Window, WindowBook, window_bounds
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate

MINUTE = 60_000


def event(seq: int, ts: float, data: bytes = b"{}", *, priority: str = "normal", type_: str = "ALERT") -> Event:
    return Event(type_, "s", seq, ts, msgspec.Raw(data), priority=priority)


def test_clock_alignment_starts_windows_at_multiples_of_the_length() -> None:
    rule = TypeRule(digest_seconds=300)
    assert window_bounds(rule, 7 * MINUTE + 5, []) == (5 * MINUTE, 10 * MINUTE)
    assert window_bounds(rule, 10 * MINUTE, []) == (10 * MINUTE, 15 * MINUTE)


def test_first_alignment_starts_a_window_at_the_first_event_and_never_overlaps_a_later_one() -> None:
    rule = TypeRule(digest_seconds=300, align="first")
    assert window_bounds(rule, 7 * MINUTE + 5, []) == (7 * MINUTE + 5, 12 * MINUTE + 5)
    later = Window(start_ms=9 * MINUTE, end_ms=14 * MINUTE, first_id=1, last_id=1)
    assert window_bounds(rule, 7 * MINUTE, [later]) == (7 * MINUTE, 9 * MINUTE)
    assert window_bounds(rule, 10 * MINUTE, [later]) is later


def test_an_event_whose_window_closed_goes_into_the_next_window() -> None:
    closed = Window(start_ms=0, end_ms=5 * MINUTE, first_id=1, last_id=1, closed=True)
    assert window_bounds(TypeRule(digest_seconds=300), 2 * MINUTE, [closed]) == (5 * MINUTE, 10 * MINUTE)
    assert window_bounds(TypeRule(digest_seconds=300, align="first"), 2 * MINUTE, [closed]) == (
        5 * MINUTE,
        10 * MINUTE,
    )


@pytest.mark.parametrize(("keep", "expected"), [("newest", [3, 4]), ("oldest", [1, 2])])
def test_a_window_counts_every_event_and_keeps_max_items_of_them(keep: str, expected: list[int]) -> None:
    rule = TypeRule(digest_seconds=60, max_items=2, keep=keep)  # type: ignore[arg-type]
    book = WindowBook({"ALERT": rule})
    for seq in range(1, 5):
        book.add("ALERT", "s", 10 + seq, msgspec.json.encode(event(seq, 1.0)))
    [(key, window)] = list(book.changed())
    assert key == ("ALERT", "s", "")
    assert (window.count, window.first_id, window.last_id, window.truncated) == (4, 11, 14, True)
    assert [msgspec.json.decode(item)["seq"] for item in window.items] == expected


def test_group_by_splits_an_aggregate_by_a_data_field() -> None:
    rule = TypeRule(digest_seconds=60, group_by="user_id")
    datas = [b'{"user_id":"a"}', b'{"user_id":7}', b'{"user_id":"a"}', b"{}"]
    [message] = aggregate([event(i, 1.0, d) for i, d in enumerate(datas)], "o")
    book = WindowBook({"ALERT": rule})
    assert book.add("ALERT", "s", 5, message.payload) == 4
    counts = {key[2]: window.count for key, window in book.changed()}
    assert counts == {"a": 2, "7": 1, "": 1}
