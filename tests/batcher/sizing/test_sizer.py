from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sse_batcher.batcher import BatcherConfig, Message, PostgresStore, SSEEventBatcher, WriteResult
from sse_batcher.batcher.pipeline.facade import FlushReport
from sse_batcher.batcher.sizing.load import LoadSample, ServerLoadMonitor, SystemLoad
from sse_batcher.batcher.sizing.sizer import BatchSizer
from sse_batcher.batcher.sizing.strategies import SizingConfig
from tests.collect import Collected

# Frontend contract (frontend/panels/load.js, batchsize.js): /api/stats "sizing".
SIZING_KEYS = {
    "dynamic", "strategy", "strategy_state", "batch_size", "batch_timeout_seconds", "load", "history", "breaker"
}  # fmt: skip
LOAD_KEYS = {
    "cpu_percent", "process_cpu_percent", "server_cpu_percent",
    "memory_percent", "load_per_core", "loop_lag_ms", "backlog",
}  # fmt: skip


class UnusedStore:
    """For batchers that are never started: nothing may reach a store."""

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        raise AssertionError("an unstarted batcher wrote to its store")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeMonitor:
    def __init__(self, cpu: float = 60.0, lag: float = 0.0) -> None:
        self.healthy = True
        self.sample: LoadSample | None = None
        self.set(cpu, lag)

    def set(self, cpu: float, lag: float = 0.0) -> None:
        self.sample = LoadSample(
            cpu_percent=cpu,
            process_cpu_percent=2.0,
            memory_percent=30.0,
            load_per_core=cpu / 100,
            loop_lag_seconds=lag,
            backlog=0,
            taken_at=0.0,
        )

    def latest(self) -> LoadSample | None:
        return self.sample


SIZING = SizingConfig(
    enabled=True, min_size=5, max_size=500, cooldown_seconds=2.0, min_timeout_seconds=0.02, sample_seconds=0.01
)


def make_batcher(tmp_path: Path, store: Any = None, **overrides: Any) -> SSEEventBatcher:
    values: dict[str, Any] = {"batch_size": 10, "batch_timeout_seconds": 0.5, "data_dir": tmp_path}
    values.update(overrides)
    unused: Any = UnusedStore()
    return SSEEventBatcher(store or unused, BatcherConfig(**values))


def report(reason: str = "size", events: int = 10, backlog: int = 0, stored: bool = True) -> FlushReport:
    return FlushReport(reason, events, 1, 0.002, stored, backlog)


def test_high_load_with_full_batches_grows_the_batch_size(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=95), FakeClock()
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    for _ in range(4):
        sizer.observe_flush(report("size"))
    decision = sizer.evaluate()
    assert decision is not None and decision.reason == "high_load"
    assert batcher.batch_size == 15


def test_low_load_shrinks_toward_the_minimum_and_the_timeout_to_its_floor(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path, batch_size=40), FakeMonitor(cpu=5), FakeClock()
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    sizes = []
    for _ in range(6):
        sizer.evaluate()
        sizes.append(batcher.batch_size)
        clock.now += 2.0
    assert sizes == [20, 10, 5, 5, 5, 5]
    assert batcher.batch_timeout_seconds == pytest.approx(0.02)


async def test_growing_backlog_grows_the_batch_size_at_once_from_the_flush_report(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=60), FakeClock()
    for i in range(400):
        batcher.emit("JOB_PROGRESS", {"i": i}, source="w")
    # A tick an hour away: only the flush report can bring the decision.
    async with BatchSizer(batcher, monitor=monitor, config=replace(SIZING, sample_seconds=3600), clock=clock) as sizer:
        sizer.observe_flush(report("size", backlog=400))
        assert batcher.batch_size == 10  # the flush loop's call only takes note; the sizer's task acts
        await anyio.wait_all_tasks_blocked()
        assert batcher.batch_size == 100
        assert sizer.statistics().history[-1].reason == "backlog"


def test_observing_a_flush_only_takes_note_even_with_a_backlog(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=60), FakeClock()
    for i in range(400):
        batcher.emit("JOB_PROGRESS", {"i": i}, source="w")
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    sizer.observe_flush(report("size", backlog=400))
    assert (batcher.batch_size, batcher.backlog, sizer.statistics().adjustments) == (10, 400, 0)
    decision = sizer.decide()  # the decision alone changes nothing in the batcher
    assert decision is not None and (decision.size, decision.reason) == (100, "backlog")
    assert (batcher.batch_size, batcher.backlog) == (10, 400)


async def test_a_flush_leaving_two_batches_behind_brings_a_decision_before_the_next_tick(
    store: PostgresStore, tmp_path: Path
) -> None:
    decided = anyio.Event()

    def on_commit(messages: Sequence[Any]) -> None:
        if any(m.type.startswith("BATCH_SIZE_ADJUSTED") for m in messages):  # alone or aggregated
            decided.set()

    batcher = make_batcher(tmp_path, store, max_batch_size=10)
    for i in range(400):  # taken ten at a time: the first flush leaves 390 behind
        batcher.emit("JOB_PROGRESS", {"i": i}, source="w")
    config = replace(SIZING, sample_seconds=3600)  # the tick never comes within the test
    async with BatchSizer(batcher, monitor=FakeMonitor(cpu=60), config=config, clock=FakeClock()) as sizer:
        batcher.add_listener(on_commit)
        async with batcher:
            with anyio.fail_after(10):
                await decided.wait()
        history = sizer.statistics().history
    assert history[0].reason == "backlog" and history[0].new_size > 10


def test_size_never_leaves_min_and_max(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=60), FakeClock()
    for i in range(30_000):
        batcher.emit("JOB_PROGRESS", {"i": i}, source="w")
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    sizer.evaluate()
    assert batcher.batch_size == 500
    monitor.set(cpu=1)
    batcher.set_batch_size(6)
    clock.now += 2.0
    emptied = make_batcher(tmp_path / "b", batch_size=6)
    sizer = BatchSizer(emptied, monitor=monitor, config=SIZING, clock=clock)
    sizer.evaluate()
    assert emptied.batch_size == 5


def test_cooldown_holds_changes_until_it_has_passed(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=95), FakeClock()
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    sizes = []
    for _ in range(5):
        for _ in range(3):
            sizer.observe_flush(report("size"))
        sizer.evaluate()
        sizes.append(batcher.batch_size)
        clock.now += 1.0
    assert sizes == [15, 15, 20, 20, 25]


def test_monitor_failure_falls_back_to_the_configured_size(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=5), FakeClock()
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    batcher.set_batch_size(5)
    batcher.set_batch_timeout(0.02)
    monitor.healthy = False
    decision = sizer.evaluate()
    assert decision is not None and decision.reason == "fallback"
    assert (batcher.batch_size, batcher.batch_timeout_seconds) == (10, 0.5)


def test_disabled_sizing_never_changes_the_size(tmp_path: Path) -> None:
    batcher, monitor = make_batcher(tmp_path), FakeMonitor(cpu=1)
    sizer = BatchSizer(batcher, monitor=monitor, config=SizingConfig(enabled=False))
    assert sizer.evaluate() is None
    assert batcher.batch_size == 10
    assert sizer.as_dict()["dynamic"] is False
    assert sizer.as_dict()["strategy"] == "fixed"  # what is in charge, whatever was configured


def test_history_is_short_and_stats_match_the_dashboard_shape(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path, batch_size=500), FakeMonitor(cpu=5), FakeClock()
    config = SizingConfig(min_size=1, max_size=500, cooldown_seconds=0, history_size=3)
    sizer = BatchSizer(batcher, monitor=monitor, config=config, clock=clock)
    for _ in range(5):
        sizer.evaluate()
    stats = sizer.as_dict()
    assert SIZING_KEYS <= stats.keys()
    assert set(stats["load"]) == LOAD_KEYS
    assert [(h["old_size"], h["new_size"]) for h in stats["history"]] == [(125, 62), (62, 31), (31, 15)]
    assert {"ts", "old_size", "new_size", "reason"} <= stats["history"][0].keys()
    assert sizer.statistics().adjustments == 5
    assert stats["breaker"] is None
    msgspec.json.encode(stats)  # JSON-ready


async def test_every_change_emits_batch_size_adjusted_with_sizes_reason_and_load(
    store: PostgresStore, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with make_batcher(tmp_path, store, batch_timeout_seconds=0.05) as batcher:
        collected = Collected()
        batcher.add_listener(collected)
        sizer = BatchSizer(batcher, monitor=FakeMonitor(cpu=5), config=SIZING, clock=clock)
        decision = sizer.evaluate()
        assert decision is not None
        await collected.wait_until(lambda: any(m.type == "BATCH_SIZE_ADJUSTED" for m in collected.messages), 10)
    message = next(m for m in collected.messages if m.type == "BATCH_SIZE_ADJUSTED")
    body = msgspec.json.decode(message.payload)
    assert body["source"] == "sizing"
    data = body["data"]
    assert (data["old_size"], data["new_size"], data["reason"], data["strategy"]) == (10, 5, "idle", "adaptive")
    assert (data["old_timeout_seconds"], data["new_timeout_seconds"]) == (0.05, 0.02)
    assert data["load"]["cpu_percent"] == 5.0


def idle_system() -> SystemLoad:
    return SystemLoad(cpu_percent=3.0, process_cpu_percent=1.0, memory_percent=20.0, load_per_core=0.05)


async def test_batch_sizer_owns_its_load_monitor_and_closes_twice(store: PostgresStore, tmp_path: Path) -> None:
    async with make_batcher(tmp_path, store) as batcher:
        collected = Collected()
        batcher.add_listener(collected)
        sizing = BatchSizer(batcher, SIZING, sampler=idle_system)
        async with sizing:
            await collected.wait_until(lambda: any(m.type == "BATCH_SIZE_ADJUSTED" for m in collected.messages), 10)
            stats = sizing.as_dict()
        await sizing.aclose()
    assert stats["dynamic"] is True
    assert stats["batch_timeout_seconds"] == pytest.approx(0.02)
    assert stats["load"]["cpu_percent"] == 3.0
    assert stats["history"][0]["reason"] == "idle"
    assert isinstance(sizing.monitor, ServerLoadMonitor)
    assert sizing.monitor.statistics().state == "closed"


def test_the_sizer_applies_the_named_strategy_and_reports_it(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=95), FakeClock()
    config = SizingConfig(strategy="conservative", min_size=5, max_size=500, cooldown_seconds=0)
    sizer = BatchSizer(batcher, monitor=monitor, config=config, clock=clock)
    sizer.evaluate()
    assert batcher.batch_timeout_seconds == pytest.approx(config.min_timeout_seconds)
    assert sizer.as_dict()["strategy"] == "conservative"


def test_learned_strategy_gets_periods_with_duration_and_cpu_time_and_shows_its_estimates(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=60), FakeClock()
    cpu = FakeClock()
    # Every period runs under (10, 0.5 s): the third sample ends the fallback, after the learning.
    config = SizingConfig(strategy="learned", cooldown_seconds=0, learned_min_samples=3, seed=1)
    sizer = BatchSizer(batcher, monitor=monitor, config=config, clock=clock, cpu_clock=cpu)
    for _ in range(3):
        for _ in range(5):
            sizer.observe_flush(report("timeout", events=10))
        clock.now += 1.0
        cpu.now += 0.05
        sizer.evaluate()
    state = sizer.as_dict()["strategy_state"]
    assert state["samples"] == 3 and state["phase"] == "learning"
    best = state["arms"][0]  # 50 events per 0.05 CPU-s, 0.2 s old: within the age target
    assert (best["band"], best["size"], best["samples"]) == (">=10/s", 13, 3)  # 13: the grid size nearest 10
    assert best["reward"] == pytest.approx(1000.0)


def test_a_backlog_grows_the_batch_in_steps_without_waiting_for_the_cooldown(tmp_path: Path) -> None:
    batcher, monitor, clock = make_batcher(tmp_path), FakeMonitor(cpu=60), FakeClock()
    sizer = BatchSizer(batcher, monitor=monitor, config=SIZING, clock=clock)
    for i in range(400):
        batcher.emit("JOB_PROGRESS", {"i": i}, source="w")
    sizer.evaluate()
    assert batcher.batch_size == 100
    for i in range(4000):
        batcher.emit("JOB_PROGRESS", {"i": i}, source="w")
    sizer.evaluate()  # the clock has not moved: the cooldown has not passed
    assert batcher.batch_size == 500
