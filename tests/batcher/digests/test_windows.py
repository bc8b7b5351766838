"""Digest windows without a database: which window an event falls in, what a window keeps."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from sse_batcher.batcher import AggregationRules, ConfigError, TypeRule
from sse_batcher.batcher.digests.windows import (
    Window,
    WindowBook,
    digest_idem_key,
    digest_payload,
    items_of,
    quiet_filter,
    window_bounds,
)
from sse_batcher.batcher.events import Event, StoredMessage
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


def test_critical_events_and_identical_counts_are_honoured() -> None:
    critical = msgspec.json.encode(event(1, 1.0, priority="critical"))
    assert list(items_of(1, critical, None)) == []
    rules = AggregationRules(types={"ALERT": TypeRule(group_identical=True)})
    [folded] = aggregate([event(i, 1.0, b'{"x":1}') for i in range(3)], "o", rules)
    [item] = items_of(2, folded.payload, None)
    assert item.count == 3


def test_the_digest_payload_is_a_single_event_of_type_t_digest() -> None:
    rule = TypeRule(digest_seconds=60, max_items=1, group_by="u")
    window = Window(start_ms=60_000, end_ms=120_000, first_id=3, last_id=9, count=2, items=[b'{"id":3}'])
    body = msgspec.json.decode(digest_payload(("ALERT", "s", "x"), window, rule))
    assert body["type"] == "ALERT_DIGEST" and body["source"] == "s" and body["ts"] == 120.0
    assert body["data"] == {
        "event_type": "ALERT",
        "group_by": "u",
        "group": "x",
        "window_start": 60.0,
        "window_end": 120.0,
        "count": 2,
        "first_id": 3,
        "last_id": 9,
        "events": [{"id": 3}],
        "truncated": True,
    }
    assert digest_idem_key(("ALERT", "s", "x"), 60_000) == "digest:ALERT:s:x:60000"
    assert len(digest_idem_key(("ALERT", "s", "x" * 500), 0)) < 120


def test_quiet_filter_holds_back_live_false_types_but_not_their_critical_events() -> None:
    is_quiet = quiet_filter({"ALERT": TypeRule(digest_seconds=60, live=False), "B": TypeRule(digest_seconds=60)})
    assert is_quiet is not None

    def stored(e: Event) -> StoredMessage:
        [m] = aggregate([e], "o")
        return StoredMessage(1, m.type, m.event_type, m.source, 1, m.payload, 0.0)

    assert is_quiet(stored(event(1, 1.0)))
    assert not is_quiet(stored(event(2, 1.0, priority="critical")))
    assert not is_quiet(stored(event(3, 1.0, type_="B")))
    assert quiet_filter({"B": TypeRule(digest_seconds=60)}) is None


@pytest.mark.parametrize(
    "values",
    [
        {"digest_seconds": 0.5},
        {"digest_seconds": 60, "max_items": 0},
        {"digest_seconds": 60, "align": "hour"},
        {"digest_seconds": 60, "keep": "all"},
        {"digest_seconds": 60, "group_by": ""},
        {"live": False},
    ],
)
def test_invalid_digest_rules_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        AggregationRules().merged({"types": {"ALERT": values}})


def test_digests_belong_to_types_not_to_the_default_rule() -> None:
    with pytest.raises(ConfigError, match="default"):
        AggregationRules().merged({"default": {"digest_seconds": 60}})
    rules = AggregationRules().merged({"types": {"B": {"digest_seconds": 60}, "A": {"digest_seconds": 5}}})
    assert list(rules.digests()) == ["A", "B"]


def test_the_readme_example_holds_the_five_notification_rules(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("### Digests") :]
    start = section.index("```toml") + len("```toml")
    (tmp_path / "rules.toml").write_text(section[start : section.index("```", start)])
    rules = AggregationRules.from_toml(tmp_path / "rules.toml").digests()
    found = {name: (rule.digest_seconds, rule.max_items) for name, rule in rules.items()}
    assert found == {
        "SYSTEM_UPDATE": (3600, 10),
        "APPROVAL_REQUEST": (900, 5),
        "ALERT": (300, 3),
        "REMINDER": (1800, 10),
        "ANNOUNCEMENT": (86400, 20),
    }
