from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sse_batcher.batcher import (
    BatcherConfig,
    BufferFullError,
    EventValidationError,
    Message,
    PostgresStore,
    SSEEventBatcher,
    StoredMessage,
    WriteResult,
)
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.sizing.split import SplitBatcher, arm_of

NAMES = [f"worker-{i}" for i in range(200)]


class UnusedStore:
    """For split batchers that are never started: nothing may reach a store."""

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        raise AssertionError("an unstarted batcher wrote to its store")


def arms(store: Any, tmp_path: Path, share_b: float = 0.5) -> SplitBatcher:
    a_config = BatcherConfig(batch_size=7, max_batch_size=7, batch_timeout_seconds=0.05, data_dir=tmp_path / "a")
    b_config = BatcherConfig(batch_size=50, max_batch_size=50, batch_timeout_seconds=0.2, data_dir=tmp_path / "b")
    a, b = SSEEventBatcher(store, a_config), SSEEventBatcher(store, b_config)
    return SplitBatcher(a, b, share_b=share_b)


def test_arms_must_not_share_a_dead_letter_directory(tmp_path: Path) -> None:
    store: Any = UnusedStore()
    a = SSEEventBatcher(store, BatcherConfig(data_dir=tmp_path))
    b = SSEEventBatcher(store, BatcherConfig(data_dir=tmp_path))
    with pytest.raises(ConfigError, match="data_dir"):
        SplitBatcher(a, b, share_b=0.5)


def source_seqs(messages: Sequence[StoredMessage]) -> dict[str, list[int]]:
    """The ``i`` of every original event, per source, in the order the listener saw them."""
    seen: dict[str, list[int]] = {}
    for message in messages:
        body = msgspec.json.decode(message.payload)
        events = body["events"] if "events" in body else [body]
        seen.setdefault(message.source, []).extend(e["data"]["i"] for e in events)
    return seen


async def test_every_event_of_every_arm_is_delivered_once_in_order_per_source_with_ids_increasing(
    store: PostgresStore, tmp_path: Path
) -> None:
    split = arms(store, tmp_path)
    delivered: list[StoredMessage] = []
    split.add_listener(delivered.extend)
    async with split:
        for i in range(30):
            for name in NAMES[:20]:
                split.emit("JOB_PROGRESS", {"i": i}, source=name)
        split.emit_many([{"type": "JOB_PROGRESS", "data": {"i": 30}, "source": name} for name in NAMES[:20]])
        for name in NAMES[:20]:
            await split.aemit("JOB_PROGRESS", {"i": 31}, source=name)
        with anyio.fail_after(20):
            assert await split.flush()
        stats = split.arm_statistics()
    ids = [m.id for m in delivered]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert source_seqs(delivered) == {name: list(range(32)) for name in NAMES[:20]}
    on_b = sum(arm_of(name, 0.5) for name in NAMES[:20])
    assert 0 < on_b < 20  # both arms carried some of the sources
    assert (stats[0].sources, stats[1].sources) == (20 - on_b, on_b)
    assert (stats[0].events, stats[1].events) == (32 * (20 - on_b), 32 * on_b)
    assert stats[0].p50_ms is not None and stats[1].p99_ms is not None
    assert split.statistics().events_stored == 32 * 20


async def test_each_arm_batches_its_own_sources_under_its_own_size(store: PostgresStore, tmp_path: Path) -> None:
    split = arms(store, tmp_path)  # arm A: batches of 7; arm B: batches of 50
    on_a = next(name for name in NAMES if arm_of(name, 0.5) == 0)
    on_b = next(name for name in NAMES if arm_of(name, 0.5) == 1)
    delivered: list[StoredMessage] = []
    split.add_listener(delivered.extend)
    async with split:
        for i in range(100):
            split.emit("JOB_PROGRESS", {"i": i}, source=on_a)
            split.emit("JOB_PROGRESS", {"i": i}, source=on_b)
        with anyio.fail_after(20):
            assert await split.flush()
    largest = {name: max(m.event_count for m in delivered if m.source == name) for name in (on_a, on_b)}
    assert largest[on_a] <= 7 < largest[on_b] <= 50
    assert [arm.statistics().events_stored for arm in split.arms] == [100, 100]


def test_emit_many_names_the_bad_event_by_its_index_in_the_whole_list(tmp_path: Path) -> None:
    split = arms(UnusedStore(), tmp_path)
    on_b = next(name for name in NAMES if arm_of(name, 0.5) == 1)
    on_a = next(name for name in NAMES if arm_of(name, 0.5) == 0)
    events = [
        {"type": "OK", "data": {}, "source": on_a},
        {"type": "OK", "data": {}, "source": on_b},
        {"type": "OK", "data": {}, "source": on_b},
        {"type": "bad type", "data": {}, "source": on_b},
    ]
    with pytest.raises(EventValidationError) as caught:
        split.emit_many(events)
    assert getattr(caught.value, "index", None) == 3


def test_a_request_key_leaves_an_empty_event_key_to_be_refused_as_one_batcher_does(tmp_path: Path) -> None:
    split = arms(UnusedStore(), tmp_path)
    on_b = next(name for name in NAMES if arm_of(name, 0.5) == 1)
    events = [
        {"type": "OK", "data": {}, "source": on_b},
        {"type": "OK", "data": {}, "source": on_b, "idempotency_key": ""},
    ]
    with pytest.raises(EventValidationError) as caught:
        split.emit_many(events, idempotency_key="req")
    assert (caught.value.field, caught.value.index) == ("idempotency_key", 1)


def small_b(tmp_path: Path) -> SplitBatcher:
    a = SSEEventBatcher(UnusedStore(), BatcherConfig(data_dir=tmp_path / "a"))
    b = SSEEventBatcher(UnusedStore(), BatcherConfig(max_buffered_events=2, batch_size=2, data_dir=tmp_path / "b"))
    return SplitBatcher(a, b, share_b=0.5)


def test_emit_many_refused_in_one_arms_share_accepts_nothing_in_the_other(tmp_path: Path) -> None:
    split = small_b(tmp_path)
    on_a = next(name for name in NAMES if arm_of(name, 0.5) == 0)
    on_b = next(name for name in NAMES if arm_of(name, 0.5) == 1)
    with pytest.raises(EventValidationError):
        split.emit_many([{"type": "OK", "data": {}, "source": on_a}, {"type": "bad", "data": {}, "source": on_b}])
    split.emit_many([{"type": "OK", "data": {}, "source": on_b}] * 2)  # arm B is full now
    with pytest.raises(BufferFullError):
        split.emit_many([{"type": "OK", "data": {}, "source": on_a}, {"type": "OK", "data": {}, "source": on_b}])
    assert [arm.backlog for arm in split.arms] == [0, 2]


async def test_publish_refused_in_one_arms_share_accepts_nothing_in_the_other(tmp_path: Path) -> None:
    split = small_b(tmp_path)
    on_a = next(name for name in NAMES if arm_of(name, 0.5) == 0)
    on_b = next(name for name in NAMES if arm_of(name, 0.5) == 1)
    with pytest.raises(EventValidationError):
        await split.publish([{"type": "OK", "data": {}, "source": on_a}, {"type": "bad", "data": {}, "source": on_b}])
    split.emit_many([{"type": "OK", "data": {}, "source": on_b}] * 2)
    with pytest.raises(BufferFullError):
        await split.publish(
            [{"type": "OK", "data": {}, "source": on_a}, {"type": "OK", "data": {}, "source": on_b}], timeout=0.5
        )
    assert [arm.backlog for arm in split.arms] == [0, 2]


def test_emit_many_over_one_arms_byte_bound_accepts_nothing_in_the_other(tmp_path: Path) -> None:
    a = SSEEventBatcher(UnusedStore(), BatcherConfig(data_dir=tmp_path / "a"))
    small = BatcherConfig(max_buffered_bytes=1000, max_event_bytes=1000, data_dir=tmp_path / "b")
    split = SplitBatcher(a, SSEEventBatcher(UnusedStore(), small), share_b=0.5)
    on_a = next(name for name in NAMES if arm_of(name, 0.5) == 0)
    on_b = next(name for name in NAMES if arm_of(name, 0.5) == 1)
    split.emit_many([{"type": "OK", "data": {"pad": "x" * 700}, "source": on_b}])
    with pytest.raises(BufferFullError):
        split.emit_many(
            [{"type": "OK", "data": {}, "source": on_a}, {"type": "OK", "data": {"pad": "x" * 700}, "source": on_b}]
        )
    assert [arm.backlog for arm in split.arms] == [0, 1]
