from __future__ import annotations

import logging
import threading
import time

import anyio
import anyio.from_thread
import pytest

from sse_batcher.batcher.errors import BatcherClosedError, ConfigError
from sse_batcher.batcher.sizing.load import LoadMonitorConfig, LoadSample, ServerLoadMonitor, SystemLoad, psutil_sampler

LOAD_KEYS = {
    "cpu_percent", "process_cpu_percent", "server_cpu_percent",
    "memory_percent", "load_per_core", "loop_lag_ms", "backlog",
}  # fmt: skip


class Sampler:
    """Scripted system figures; "fail" raises. Calls run in a worker thread."""

    def __init__(self, *plan: float | str) -> None:
        self.plan = list(plan)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> SystemLoad:
        with self.lock:
            self.calls += 1
            step = self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]
        if step == "fail":
            raise OSError("injected: /proc unreadable")
        assert isinstance(step, float)
        return SystemLoad(cpu_percent=step, process_cpu_percent=1.5, memory_percent=42.0, load_per_core=0.25)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def test_sample_reports_system_figures_and_the_backlog_in_the_dashboard_shape() -> None:
    monitor = ServerLoadMonitor(backlog=lambda: 17, sampler=Sampler(73.0))
    sample = await monitor.sample()
    assert sample is not None
    assert (sample.cpu_percent, sample.backlog) == (73.0, 17)
    assert set(sample.as_dict()) == LOAD_KEYS
    assert monitor.healthy


async def test_failing_sample_is_logged_keeps_the_last_good_figures_and_turns_unhealthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = ServerLoadMonitor(sampler=Sampler(40.0, "fail", "fail", 60.0))
    await monitor.sample()
    with caplog.at_level(logging.WARNING, logger="sse_batcher.batcher.sizing.load"):
        assert await monitor.sample() is None
        assert await monitor.sample() is None
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "load sample failed; keeping the last good figures: OSError('injected: /proc unreadable')"
    ]
    latest = monitor.latest()
    assert latest is not None and latest.cpu_percent == 40.0
    assert not monitor.healthy
    assert monitor.statistics().failures == 2
    await monitor.sample()
    assert monitor.healthy


async def test_a_sample_older_than_a_few_intervals_no_longer_counts_as_healthy() -> None:
    clock = FakeClock()
    monitor = ServerLoadMonitor(LoadMonitorConfig(sample_seconds=1.0), sampler=Sampler(10.0), clock=clock)
    await monitor.sample()
    clock.now += 3.0
    assert monitor.healthy
    clock.now += 0.1
    assert not monitor.healthy


async def test_background_sampling_runs_until_closed_and_close_is_idempotent() -> None:
    sampled = anyio.Event()
    sampler = Sampler(20.0)

    def counting() -> SystemLoad:
        load = sampler()
        if sampler.calls == 3:
            anyio.from_thread.run_sync(sampled.set)
        return load

    monitor = ServerLoadMonitor(LoadMonitorConfig(sample_seconds=0.001), sampler=counting)
    async with monitor:
        with anyio.fail_after(10):
            await sampled.wait()
    await monitor.aclose()
    assert monitor.statistics().state == "closed"
    assert monitor.statistics().samples >= 3
    with pytest.raises(BatcherClosedError):
        await monitor.start()


async def test_loop_lag_measures_how_late_a_blocked_loop_wakes_the_sampler() -> None:
    second_call = anyio.Event()
    first: list[LoadSample | None] = []
    monitor: ServerLoadMonitor

    def recording() -> SystemLoad:
        if monitor.statistics().samples == 1 and not first:
            first.append(monitor.latest())  # the sampling loop is sequential: the first sample is stored
            anyio.from_thread.run_sync(second_call.set)
        return SystemLoad(cpu_percent=1.0, process_cpu_percent=1.0, memory_percent=1.0, load_per_core=0.0)

    monitor = ServerLoadMonitor(LoadMonitorConfig(sample_seconds=0.05), sampler=recording)
    async with monitor:
        await anyio.wait_all_tasks_blocked()  # the sampler's task is in its sleep
        # The stimulus, not a synchronisation: a callback hogging the loop, as CPU-bound code would.
        time.sleep(0.2)  # noqa: ASYNC251
        with anyio.fail_after(10):
            await second_call.wait()
    [sample] = first
    assert sample is not None and sample.loop_lag_seconds >= 0.1
    assert sample.as_dict()["loop_lag_ms"] >= 100


def test_psutil_sampler_reports_percentages_of_the_whole_machine() -> None:
    load = psutil_sampler()()
    assert 0.0 <= load.cpu_percent <= 100.0
    assert 0.0 <= load.process_cpu_percent <= 100.0
    assert 0.0 < load.memory_percent < 100.0
    assert load.load_per_core >= 0.0


def test_config_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sample_seconds"):
        LoadMonitorConfig(sample_seconds=0)
