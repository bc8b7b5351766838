from __future__ import annotations

import threading
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sse_batcher.batcher.errors import BufferFullError
from sse_batcher.batcher.events import NORMAL
from sse_batcher.batcher.pipeline.buffer import EventBuffer


def put(
    buffer: EventBuffer,
    type_: str,
    source: str,
    data: bytes,
    *,
    priority: str = NORMAL,
    batched: bool = True,
    timeout: float | None = None,
    urgent: bool = False,
) -> int:
    """One event into ``buffer``, field by field, as intake would hand it over."""
    return buffer.put_item((type_, source, data, priority, None, batched, urgent, None), timeout)


class _Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_full_buffer_raises_and_accepts_nothing() -> None:
    buffer = EventBuffer(capacity=3, batch_size=10, wake=_Wakes())
    for _ in range(3):
        put(buffer, "T", "s", b"{}")
    with pytest.raises(BufferFullError, match="full"):
        put(buffer, "T", "s", b"{}")
    assert len(buffer) == 3
    assert buffer.room.rejected == 1
    assert buffer.last_seq == 3


def test_put_many_is_all_or_nothing() -> None:
    buffer = EventBuffer(capacity=5, batch_size=10, wake=_Wakes())
    put(buffer, "T", "s", b"{}")
    with pytest.raises(BufferFullError):
        buffer.put_many([("T", "s", b"{}", "normal", None, True, False, None)] * 5)
    assert len(buffer) == 1
    assert buffer.put_many([("T", "s", b"{}", "normal", None, True, False, None)] * 4) == [2, 3, 4, 5]


def test_thread_waits_for_room_then_succeeds() -> None:
    buffer = EventBuffer(capacity=1, batch_size=10, wake=_Wakes())
    put(buffer, "T", "s", b"{}")
    waiting = threading.Event()
    result: list[int] = []

    def emitter() -> None:
        waiting.set()
        result.append(put(buffer, "T", "s", b"{}", timeout=30))

    thread = threading.Thread(target=emitter)
    thread.start()
    waiting.wait()
    # Take until the emitter's event has landed: it can only get in once there is room.
    taken = []
    while not result:
        taken += buffer.take(10)
        thread.join(0.01)
    thread.join()
    assert [e.seq for e in taken + buffer.take(10)] == [1, 2]
    assert result == [2]


def test_thread_wait_times_out_with_buffer_full_error() -> None:
    buffer = EventBuffer(capacity=1, batch_size=10, wake=_Wakes())
    put(buffer, "T", "s", b"{}")
    with pytest.raises(BufferFullError, match="after waiting"):
        put(buffer, "T", "s", b"{}", timeout=0.01)
    assert len(buffer) == 1


def test_wakes_once_to_arm_the_timer_and_once_when_the_batch_fills() -> None:
    wakes = _Wakes()
    buffer = EventBuffer(capacity=1000, batch_size=50, wake=wakes)
    for _ in range(120):
        put(buffer, "T", "s", b"{}")
    assert wakes.count == 2


def test_critical_and_urgent_events_wake_at_once_and_stay_in_order() -> None:
    wakes = _Wakes()
    buffer = EventBuffer(capacity=1000, batch_size=50, wake=wakes)
    put(buffer, "T", "s", b"{}")
    put(buffer, "T", "s", b"{}", priority="critical")
    put(buffer, "JOB_FAILED", "s", b"{}", urgent=True)
    assert wakes.count == 3
    assert buffer.urgent
    assert [e.seq for e in buffer.take(2)] == [1, 2]
    assert buffer.urgent  # the urgent JOB_FAILED still waits
    buffer.take(1)
    assert not buffer.urgent


def test_unbatched_events_bypass_the_batched_queue() -> None:
    wakes = _Wakes()
    buffer = EventBuffer(capacity=1000, batch_size=50, wake=wakes)
    put(buffer, "T", "a", b"{}")
    put(buffer, "T", "b", b"{}", batched=False)
    put(buffer, "T", "b", b"{}", batched=False)
    assert wakes.count == 2  # armed the timer once, bypass queue became non-empty once
    assert buffer.bypass_waiting and not buffer.urgent
    assert buffer.marks() == (1, 2)
    assert [(e.seq, e.batched) for e in buffer.take_bypass()] == [(2, False), (3, False)]
    assert len(buffer) == 1 and buffer.taken == (0, 2)
    assert [e.seq for e in buffer.take(10)] == [1]


def test_capacity_counts_both_queues() -> None:
    buffer = EventBuffer(capacity=2, batch_size=10, wake=_Wakes())
    put(buffer, "T", "s", b"{}")
    put(buffer, "T", "s", b"{}", batched=False)
    with pytest.raises(BufferFullError):
        put(buffer, "T", "s", b"{}", batched=False)


def test_concurrent_emit_from_eight_threads_loses_and_reorders_nothing() -> None:
    buffer = EventBuffer(capacity=1_000_000, batch_size=100, wake=_Wakes())
    per_thread = 5000
    barrier = threading.Barrier(8)

    def emitter(index: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            put(buffer, "T", f"w{index}", b'{"i":%d}' % i)

    threads = [threading.Thread(target=emitter, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = buffer.take(10**7)
    assert len(events) == 8 * per_thread
    assert [e.seq for e in events] == list(range(1, 8 * per_thread + 1))
    for n in range(8):
        mine = [bytes(e.data) for e in events if e.source == f"w{n}"]
        assert mine == [b'{"i":%d}' % i for i in range(per_thread)]


class BufferMachine(RuleBasedStateMachine):
    """The buffer against a plain deque: no loss, no duplicate, per-source order, bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = EventBuffer(capacity=20, batch_size=5, wake=_Wakes())
        self.model: deque[tuple[int, str]] = deque()
        self.taken: list[tuple[int, str]] = []
        self.next_seq = 1

    @rule(source=st.sampled_from(["a", "b", "c"]))
    def put(self, source: str) -> None:
        if len(self.model) >= 20:
            with pytest.raises(BufferFullError):
                put(self.buffer, "T", source, b"{}")
            return
        seq = put(self.buffer, "T", source, b"{}")
        assert seq == self.next_seq
        self.next_seq += 1
        self.model.append((seq, source))

    @rule(items=st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=8))
    def put_many(self, items: list[str]) -> None:
        batch = [("T", s, b"{}", "normal", None, True, False, None) for s in items]
        if len(self.model) + len(items) > 20:
            with pytest.raises(BufferFullError):
                self.buffer.put_many(batch)
            return
        seqs = self.buffer.put_many(batch)
        self.model.extend(zip(seqs, items, strict=True))
        self.next_seq += len(items)

    @precondition(lambda self: len(self.model) > 0)
    @rule(limit=st.integers(min_value=1, max_value=25))
    def take(self, limit: int) -> None:
        got = [(e.seq, e.source) for e in self.buffer.take(limit)]
        expected = [self.model.popleft() for _ in range(min(limit, len(self.model)))]
        assert got == expected
        self.taken.extend(got)

    @invariant()
    def matches_model(self) -> None:
        assert len(self.buffer) == len(self.model)
        seqs = [s for s, _ in self.taken]
        assert len(seqs) == len(set(seqs))
        assert seqs == sorted(seqs)


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_event_stamps_are_whole_milliseconds_so_they_encode_with_at_most_three_decimals() -> None:
    buffer = EventBuffer(capacity=10, batch_size=10, wake=_Wakes())
    put(buffer, "T", "s", b"{}")
    buffer.put_many([("T", "s", b"{}", "normal", None, True, False, None)] * 2)
    for event in buffer.take(10):
        assert len(repr(event.ts).partition(".")[2]) <= 3
        assert event.ts == round(event.ts, 3)


def test_buffer_is_bounded_in_bytes_and_a_thread_waits_for_bytes_to_leave() -> None:
    buffer = EventBuffer(capacity=100, batch_size=10, wake=_Wakes(), max_bytes=10)
    put(buffer, "T", "s", b"12345678")
    with pytest.raises(BufferFullError, match="bytes"):
        put(buffer, "T", "s", b"123")
    assert buffer.room.bytes == 8 and buffer.room.rejected == 1
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(put(buffer, "T", "s", b"123", timeout=30)))
    thread.start()
    while buffer.room.waiting == 0:
        thread.join(0.001)
    assert [e.seq for e in buffer.take(10)] == [1]
    thread.join()
    assert result == [2] and buffer.room.bytes == 3


def test_put_many_is_refused_whole_when_its_bytes_do_not_fit() -> None:
    buffer = EventBuffer(capacity=100, batch_size=10, wake=_Wakes(), max_bytes=10)
    with pytest.raises(BufferFullError):
        buffer.put_many([("T", "s", b"1234", "normal", None, True, False, None)] * 3)
    assert len(buffer) == 0 and buffer.room.bytes == 0
    assert buffer.put_many([("T", "s", b"1234", "normal", None, True, False, None)] * 2) == [1, 2]


def test_contended_puts_keep_each_threads_order_and_each_source_and_types_order() -> None:
    buffer = EventBuffer(capacity=100_000, batch_size=10_000, wake=_Wakes())
    per_thread = 5000
    barrier = threading.Barrier(4)

    def emitter(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            # Each thread has a source of its own and two types; one (source, type) is shared by all.
            put(buffer, f"T{i % 2}", f"w{n}", b'{"i":%d}' % i)
            put(buffer, "SHARED", "all", b'{"n":%d,"i":%d}' % (n, i))

    threads = [threading.Thread(target=emitter, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = buffer.take(len(buffer))
    assert [e.seq for e in events] == list(range(1, 8 * per_thread + 1))
    for n in range(4):
        mine = [int(bytes(e.data)[5:-1]) for e in events if e.source == f"w{n}"]
        assert mine == list(range(per_thread))
        shared = [e for e in events if e.source == "all" and bytes(e.data).startswith(b'{"n":%d,' % n)]
        assert [int(bytes(e.data).split(b'"i":')[1][:-1]) for e in shared] == list(range(per_thread))
    for group in {(e.source, e.type) for e in events}:
        seqs = [e.seq for e in events if (e.source, e.type) == group]
        assert seqs == sorted(seqs)
