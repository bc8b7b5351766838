from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_batcher.batcher.config import STRATEGY_NAMES
from sse_batcher.batcher.sizing.load import LoadSample
from sse_batcher.batcher.sizing.named import make_strategy
from sse_batcher.batcher.sizing.strategies import AdaptiveStrategy, Signals, SizingConfig, SizingStrategy

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


def controller() -> AdaptiveStrategy:
    return AdaptiveStrategy(CONFIG, default_size=10, max_timeout_seconds=0.5)


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


def test_growing_backlog_jumps_the_size_to_clear_it_in_a_few_flushes_capped_at_the_maximum() -> None:
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
    name=st.sampled_from(STRATEGY_NAMES),
)
def test_every_strategy_stays_within_min_max_and_the_timeout_bounds(
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
    name: str,
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
        period_seconds=1.0,
        cpu_seconds=0.1,
    )
    strategy = named(name)
    strategy.learn(size, timeout, signals)
    new_size, new_timeout, _ = strategy.target(size, timeout, signals)
    assert 5 <= new_size <= 500
    assert 0.02 <= new_timeout <= 0.5


def named(name: str, **overrides: object) -> SizingStrategy:
    return make_strategy(replace(CONFIG, strategy=name, **overrides), default_size=10, max_timeout_seconds=0.5)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_falls_back_to_the_configured_size_at_once_even_in_cooldown(name: str) -> None:
    strategy = named(name)
    assert strategy.name == name
    strategy.decide(10, 0.5, Signals(load=load(), backlog=4000), now=100.0)
    decision = strategy.decide(500, 0.02, Signals(load=None, backlog=4000), now=100.5)
    assert decision is not None
    assert (decision.size, decision.timeout_seconds, decision.reason) == (10, 0.5, "fallback")


@pytest.mark.parametrize("name", [n for n in STRATEGY_NAMES if n != "fixed"])
def test_every_moving_strategy_waits_out_the_cooldown_between_two_changes(name: str) -> None:
    """Growth through a backlog is the one change that skips it; a back-off after it waits."""
    strategy = named(name)
    backlog = Signals(load=load(), backlog=4000, flushes=4, full_flushes=4, events=40)
    grown = strategy.decide(10, 0.5, backlog, now=100.0)
    assert grown is not None
    failing = Signals(load=load(), backlog=0, flushes=4, events=40, errors=1)
    assert strategy.decide(grown.size, 0.5, failing, now=101.9) is None
    assert strategy.decide(grown.size, 0.5, failing, now=102.0) is not None


def test_fixed_never_leaves_the_configured_size_and_timeout() -> None:
    busy = Signals(load=load(cpu=99), backlog=40_000, flushes=9, full_flushes=9, events=90, errors=1)
    assert named("fixed").target(10, 0.5, busy) == (10, 0.5, "fixed")


def test_conservative_keeps_the_timeout_at_its_floor_and_the_size_under_a_quarter_of_the_maximum() -> None:
    strategy = named("conservative")
    full = Signals(load=load(cpu=95), backlog=0, flushes=10, full_flushes=10, events=100)
    assert strategy.target(10, 0.5, full) == (15, 0.02, "saturated")
    assert strategy.target(10, 0.5, Signals(load=load(), backlog=40_000))[0] == 125
    assert strategy.pinned_timeout() == 0.02


def test_aggressive_doubles_filling_batches_keeps_the_configured_timeout_and_does_not_shrink_when_empty() -> None:
    strategy = named("aggressive")
    full = Signals(load=load(cpu=5), backlog=0, flushes=10, full_flushes=10, events=400)
    assert strategy.target(40, 0.02, full) == (80, 0.5, "saturated")
    empty = Signals(load=load(cpu=5), backlog=0, flushes=10, full_flushes=0, events=10)
    assert strategy.target(80, 0.5, empty) == (80, 0.5, "idle")
    assert strategy.target(10, 0.5, Signals(load=load(), backlog=400))[0] == 200  # cleared in two flushes


def test_balanced_sits_between_in_timeout_and_growth() -> None:
    strategy = named("balanced")
    full = Signals(load=load(cpu=60), backlog=0, flushes=10, full_flushes=10, events=400)
    size, timeout, _ = strategy.target(40, 0.5, full)
    assert size == 60 and timeout == pytest.approx(math.sqrt(0.02 * 0.5))
    idle = Signals(load=load(cpu=5), backlog=0, flushes=10, full_flushes=0, events=10)
    assert strategy.target(40, 0.1, idle) == (30, 0.02, "idle")


@pytest.mark.parametrize("name", [n for n in STRATEGY_NAMES if n != "fixed"])
def test_every_moving_strategy_backs_off_on_a_failed_write(name: str) -> None:
    signals = Signals(load=load(cpu=60), backlog=0, flushes=3, errors=1)
    assert named(name).target(100, 0.5, signals)[0::2] == (90, "write_errors")


def test_a_busy_host_does_not_make_an_idle_server_wait_out_the_full_timeout() -> None:
    """Steered by the server's own CPU: 95% host CPU from other processes, 3% ours, is idle."""
    busy_host = LoadSample(
        cpu_percent=95.0,
        process_cpu_percent=1.5,
        memory_percent=40.0,
        load_per_core=2.0,
        loop_lag_seconds=0.0,
        backlog=0,
        taken_at=0.0,
        server_cpu_percent=3.0,
    )
    size, timeout, reason = controller().target(10, 0.5, Signals(load=busy_host, backlog=0))
    assert (timeout, reason) == (0.02, "idle")
    starved = replace(busy_host, loop_lag_seconds=0.2)  # starved by the others: the loop lag shows it
    assert controller().target(10, 0.02, Signals(load=starved, backlog=0))[2] == "high_load"


def test_growth_takes_no_cooldown_while_a_backlog_waits() -> None:
    """A burst grows the batch at once, and again at once while it still waits behind a larger backlog."""
    c = controller()
    first = c.decide(10, 0.5, Signals(load=load(), backlog=400), now=100.0)
    assert first is not None and first.size == 100
    second = c.decide(100, 0.5, Signals(load=load(), backlog=4000), now=100.1)
    assert second is not None and second.size == 500 and second.reason == "backlog"


def test_shrinking_still_waits_for_the_cooldown_with_a_backlog() -> None:
    c = controller()
    assert c.decide(10, 0.5, Signals(load=load(cpu=95), backlog=0, flushes=4, full_flushes=4, events=40), now=100.0)
    assert c.decide(15, 0.5, Signals(load=load(), backlog=400, errors=1), now=100.5) is None
