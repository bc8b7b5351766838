"""DeadlineClock: the earliest deadline among buffered events, each type by its own batch timeout."""

from __future__ import annotations

import pytest

from sse_batcher.batcher.rules.deadlines import DeadlineClock


def test_deadline_clock_names_the_earliest_deadline_across_type_timeouts_and_the_batch_timeout() -> None:
    clock = DeadlineClock({"FAST": 0.1, "SLOW": 5.0})
    assert clock.next_deadline(1.0) is None
    assert clock.add("SLOW", 1, 100.0) is True
    assert clock.add("SLOW", 2, 100.5) is False
    assert clock.next_deadline(1.0) == 105.0
    assert clock.add("OTHER", 3, 101.0) is True
    assert clock.next_deadline(1.0) == 102.0
    assert clock.next_deadline(0.02) == pytest.approx(101.02)  # the adaptive timeout moves it
    assert clock.add("FAST", 4, 101.5) is True
    assert clock.next_deadline(1.0) == pytest.approx(101.6)
    clock.drop_through(3)
    assert clock.next_deadline(1.0) == pytest.approx(101.6)
    clock.drop_through(4)
    assert clock.next_deadline(1.0) is None
