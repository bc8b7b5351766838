from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batcher.controller import Signals, SizingConfig, SizingController
from batcher.errors import ConfigError
from batcher.load import LoadSample

CONFIG = SizingConfig(
    enabled=True,
    min_size=5,
    max_size=500,
    low_load_percent=50,
    high_load_percent=80,
    cooldown_seconds=2.0,
    min_timeout_seconds=0.02,
    latency_target_seconds=0.1,
)


def load(cpu: float = 60.0, lag: float = 0.0) -> LoadSample:
    return LoadSample(
        cpu_percent=cpu,
        process_cpu_percent=1.0,
        memory_percent=40.0,
        load_per_core=cpu / 100,
        loop_lag_seconds=lag,
        backlog=0,
        taken_at=0.0,
    )


def controller() -> SizingController:
    return SizingController(CONFIG, default_size=10, max_timeout_seconds=0.5)


def test_high_load_with_filling_batches_grows_the_size_and_the_timeout() -> None:
    signals = Signals(load=load(cpu=95), backlog=3, flushes=10, full_flushes=8, events=80)
    decision = controller().decide(10, 0.1, signals, now=100.0)
    assert decision is not None
    assert (decision.size, decision.timeout_seconds, decision.reason) == (15, 0.2, "high_load")


def test_high_load_without_full_batches_raises_only_the_timeout_never_above_the_configured_one() -> None:
    signals = Signals(load=load(cpu=95), backlog=0, flushes=10, full_flushes=0, events=10)
    decision = controller().decide(10, 0.4, signals, now=100.0)
    assert decision is not None
    assert (decision.size, decision.timeout_seconds) == (10, 0.5)


def test_event_loop_lag_counts_as_high_load_whatever_psutil_says() -> None:
    signals = Signals(load=load(cpu=10, lag=0.2), backlog=0, flushes=4, full_flushes=4, events=40)
    decision = controller().decide(10, 0.5, signals, now=100.0)
    assert decision is not None
    assert (decision.size, decision.reason) == (15, "high_load")


def test_low_load_drops_the_timeout_to_its_floor_and_halves_the_size_toward_the_minimum() -> None:
    c = controller()
    signals = Signals(load=load(cpu=5), backlog=0, flushes=2, full_flushes=0, events=2)
    decision = c.decide(40, 0.5, signals, now=100.0)
    assert decision is not None
    assert (decision.size, decision.timeout_seconds, decision.reason) == (20, 0.02, "idle")
    assert c.target(6, 0.02, signals)[0] == 5
    assert c.decide(5, 0.02, signals, now=200.0) is None  # already at the minimum


def test_low_load_keeps_a_size_that_batches_still_fill_a_quarter_of() -> None:
    signals = Signals(load=load(cpu=5), backlog=0, flushes=10, full_flushes=0, events=150)
    assert controller().target(40, 0.02, signals)[0] == 40


def test_growing_backlog_jumps_the_size_to_drain_it_in_a_few_flushes_capped_at_the_maximum() -> None:
    c = controller()
    assert c.target(10, 0.5, Signals(load=load(), backlog=400))[0:3:2] == (100, "backlog")
    assert c.target(10, 0.5, Signals(load=load(), backlog=20_000))[0] == 500
    assert c.target(10, 0.5, Signals(load=load(), backlog=25))[0] == 15  # at least one step


def test_filling_batches_at_moderate_load_grow_additively() -> None:
    signals = Signals(load=load(cpu=60), backlog=0, flushes=10, full_flushes=6, events=60)
    assert controller().target(10, 0.5, signals) == (15, 0.5, "saturated")


def test_a_failed_write_shrinks_the_size_multiplicatively() -> None:
    signals = Signals(load=load(cpu=95), backlog=500, flushes=3, errors=1)
    assert controller().target(100, 0.5, signals) == (90, 0.5, "write_errors")


def test_missed_latency_target_backs_off_by_the_long_to_short_latency_ratio_clamped() -> None:
    c = controller()
    drift = Signals(load=load(), backlog=0, flushes=5, write_seconds=0.12, long_write_seconds=0.11)
    spike = Signals(load=load(), backlog=0, flushes=5, write_seconds=1.0, long_write_seconds=0.01)
    assert c.target(100, 0.5, drift) == (90, 0.5, "latency")
    assert c.target(100, 0.5, spike) == (50, 0.5, "latency")


def test_latency_within_target_does_not_stop_growth() -> None:
    signals = Signals(load=load(), backlog=0, flushes=5, full_flushes=5, events=50, write_seconds=0.05)
    assert controller().target(10, 0.5, signals)[2] == "saturated"


def test_no_change_within_the_cooldown_then_the_change_is_made() -> None:
    c = controller()
    busy = Signals(load=load(cpu=95), backlog=0, flushes=4, full_flushes=4, events=40)
    assert c.decide(10, 0.5, busy, now=100.0) is not None
    assert c.decide(15, 0.5, busy, now=101.9) is None
    decision = c.decide(15, 0.5, busy, now=102.0)
    assert decision is not None and decision.size == 20


def test_monitor_failure_falls_back_to_the_configured_size_at_once_even_in_cooldown() -> None:
    c = controller()
    assert c.decide(10, 0.5, Signals(load=load(), backlog=4000), now=100.0) is not None
    decision = c.decide(500, 0.02, Signals(load=None, backlog=4000), now=100.5)
    assert decision is not None
    assert (decision.size, decision.timeout_seconds, decision.reason) == (10, 0.5, "fallback")
    assert c.decide(10, 0.5, Signals(load=None, backlog=4000), now=100.6) is None


def test_config_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="min_size"):
        SizingConfig(min_size=50, max_size=10)
    with pytest.raises(ConfigError, match="low_load_percent"):
        SizingConfig(low_load_percent=90, high_load_percent=80)
    with pytest.raises(ConfigError, match="decrease_factor"):
        SizingConfig(decrease_factor=1.0)


@given(
    size=st.integers(5, 500),
    timeout=st.floats(0.02, 0.5),
    cpu=st.floats(0, 100),
    lag=st.floats(0, 1),
    backlog=st.integers(0, 100_000),
    flushes=st.integers(0, 100),
    full=st.integers(0, 100),
    errors=st.integers(0, 3),
    write=st.none() | st.floats(0.0001, 10),
    long=st.none() | st.floats(0.0001, 10),
    healthy=st.booleans(),
)
def test_decisions_stay_within_min_max_and_the_timeout_bounds(
    size: int,
    timeout: float,
    cpu: float,
    lag: float,
    backlog: int,
    flushes: int,
    full: int,
    errors: int,
    write: float | None,
    long: float | None,
    healthy: bool,
) -> None:
    signals = Signals(
        load=load(cpu, lag) if healthy else None,
        backlog=backlog,
        flushes=flushes,
        full_flushes=min(full, flushes),
        events=flushes * 3,
        errors=errors,
        write_seconds=write,
        long_write_seconds=long,
    )
    new_size, new_timeout, _ = controller().target(size, timeout, signals)
    assert 5 <= new_size <= 500
    assert 0.02 <= new_timeout <= 0.5
