"""The ``learned`` sizing strategy (``batcher/sizing/learned.py``): a bandit that finds the best (size,
timeout) of a synthetic server, defers to ``adaptive`` until it has samples, and keeps bounded memory."""

from __future__ import annotations

import random
from dataclasses import replace

from sse_batcher.batcher.sizing.learned import LearnedStrategy, reward
from sse_batcher.batcher.sizing.strategies import AdaptiveStrategy, Signals, SizingStrategy
from tests.batcher.sizing.test_strategies import CONFIG, load, named


class SyntheticServer:
    """A server whose best (size, timeout) is known: 400 events/s, a fixed cost per flush, noise.

    A batch leaves when it fills (size / rate seconds) or times out; the age at commit is the
    shorter of the two. With a 0.25 s age target the best grid choice is size 79 with the
    0.5 s timeout (79 events per flush, 0.1975 s old): a bigger batch waits too long, a smaller
    one pays the flush cost more often.
    """

    RATE = 400.0

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def period(self, size: int, timeout: float) -> Signals:
        per_flush = min(float(size), self.RATE * timeout)
        flushes = max(1, round(self.RATE / per_flush))
        events = round(flushes * per_flush)
        cpu = (0.01 + 0.004 * flushes + 0.00002 * events) * self.random.uniform(0.9, 1.1)
        return Signals(
            load=load(cpu=60),
            backlog=0,
            flushes=flushes,
            full_flushes=flushes if size <= self.RATE * timeout else 0,
            events=events,
            write_seconds=0.002,
            long_write_seconds=0.002,
            period_seconds=1.0,
            cpu_seconds=cpu,
        )


def run_synthetic(strategy: SizingStrategy, steps: int = 300) -> list[float]:
    """The reward of every period of ``strategy`` steering the synthetic server."""
    server = SyntheticServer(seed=3)
    size, timeout = 10, 0.5
    rewards = []
    for step in range(steps):
        signals = server.period(size, timeout)
        value = reward(size, timeout, signals, 0.25)
        assert value is not None
        rewards.append(value)
        decision = strategy.decide(size, timeout, signals, now=float(step))
        if decision is not None:
            size, timeout = decision.size, decision.timeout_seconds
    return rewards


def test_learned_improves_its_reward_and_settles_on_the_known_best_choice() -> None:
    config = replace(CONFIG, strategy="learned", cooldown_seconds=0, seed=7, age_target_seconds=0.25)
    strategy = LearnedStrategy(config, default_size=10, max_timeout_seconds=0.5)
    rewards = run_synthetic(strategy)
    assert strategy.best(3) == (79, 0.5)  # the 100-1,000 events/s band
    first, last = sum(rewards[:8]) / 8, sum(rewards[-50:]) / 50
    assert last > 1.5 * first
    adaptive = run_synthetic(AdaptiveStrategy(config, default_size=10, max_timeout_seconds=0.5))
    assert last > sum(adaptive[-50:]) / 50  # adaptive grows past the age target here
    state = strategy.describe()
    assert state["phase"] == "learning"
    best = state["arms"][0]
    assert (best["band"], best["size"], best["timeout_seconds"]) == (">=100/s", 79, 0.5)
    assert best["samples"] > 0 and best["reward"] > 0


def test_learned_defers_to_adaptive_until_it_has_enough_samples() -> None:
    config = replace(CONFIG, strategy="learned", learned_min_samples=5)
    learned = LearnedStrategy(config, default_size=10, max_timeout_seconds=0.5)
    adaptive = AdaptiveStrategy(config, default_size=10, max_timeout_seconds=0.5)
    server = SyntheticServer(seed=1)
    for _ in range(4):
        signals = server.period(10, 0.5)
        learned.learn(10, 0.5, signals)
        assert learned.target(10, 0.5, signals) == adaptive.target(10, 0.5, signals)
        assert learned.describe()["phase"] == "fallback"
    learned.learn(10, 0.5, server.period(10, 0.5))
    learned.target(10, 0.5, server.period(10, 0.5))
    assert learned.describe()["phase"] == "learning"


def test_learned_memory_is_bounded_whatever_it_sees() -> None:
    strategy = named("learned", seed=1)
    rng = random.Random(5)
    for _ in range(2000):
        size, timeout = rng.randint(5, 500), rng.uniform(0.02, 0.5)
        signals = Signals(
            load=load(), backlog=0, flushes=rng.randint(1, 50), events=rng.randint(1, 100_000),
            period_seconds=1.0, cpu_seconds=rng.uniform(0.01, 1),
        )  # fmt: skip
        strategy.learn(size, timeout, signals)
    state = strategy.describe()
    assert state["samples"] == 2000
    assert len(state["arms"]) <= 6 * 6  # at most six shown per band, six bands
