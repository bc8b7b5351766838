"""The ``learned`` sizing strategy: a bandit over (batch size, timeout), fed by the server's own periods.

No offline training data: every decision period the server already measures (events delivered,
the CPU this process used, flushes, store write time, backlog) is a sample of the reward of the
(size, timeout) it ran under. The reward is delivered events per CPU-second, cut down when the
period's estimated age at commit (the wait to fill a batch or time out, plus the store write,
plus the time to clear what was left behind) passes ``age_target_seconds``: by the square of
``target / age``, so a choice that keeps events twice too long keeps a quarter of its reward.

Choices are a grid: six sizes spaced geometrically from the minimum to the maximum, and three
timeouts (the floor, the configured timeout, and their geometric mean). The best choice depends
on the arrival rate (at 10 events/s no size fills), so there is one table per decade of events
per second. Memory is bounded: 6 bands x 18 choices, each an exponentially weighted mean (the
weight never drops under 0.1, so the table follows a machine whose costs drift) and a count.

Policy, per band: until ``learned_min_samples`` periods were seen, defer to ``adaptive`` (whose
choices are credited to the nearest grid cell, so the band learns from them). Then take the
best-known choice, and with probability ``learned_explore`` one of its grid neighbours instead
(local exploration: a random far choice could hold events ten times too long). The safety rules
stay adaptive's: a failed write, a missed store latency target and a backlog are handled by it
whatever the table says, and a failing monitor falls back to the configured size at once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from sse_batcher.batcher.sizing._types import Signals, SizingConfig, _Proposal
from sse_batcher.batcher.sizing.load import LoadSample
from sse_batcher.batcher.sizing.strategies import AdaptiveStrategy

__all__ = ["LearnedStrategy", "reward"]

_SIZES = 6
_BANDS = 6  # <1, <10, <100, <1,000, <10,000 and more events/s
_MIN_WEIGHT = 0.1
_SHOWN_PER_BAND = 6


def reward(size: int, timeout_seconds: float, s: Signals, age_target_seconds: float) -> float | None:
    """The reward of one period that ran under (size, timeout); None when it says nothing.

    A period with no events, or without a CPU or duration figure, is not a sample.
    """
    period, cpu = s.period_seconds, s.cpu_seconds
    if s.events <= 0 or not period or not cpu or cpu <= 0:
        return None
    rate = s.events / period
    age = min(timeout_seconds, size / rate) + (s.write_seconds or 0.0) + min(s.backlog / rate, period)
    value = s.events / cpu
    if age > age_target_seconds:
        value *= (age_target_seconds / age) ** 2
    return value


@dataclass(slots=True)
class _Cell:
    samples: int = 0
    mean: float = 0.0

    def add(self, value: float) -> None:
        self.samples += 1
        self.mean += max(1.0 / self.samples, _MIN_WEIGHT) * (value - self.mean)


class LearnedStrategy(AdaptiveStrategy):
    """Pick (size, timeout) by its measured reward in the current arrival-rate band; see the module."""

    name = "learned"

    def __init__(self, config: SizingConfig, *, default_size: int, max_timeout_seconds: float) -> None:
        super().__init__(config, default_size=default_size, max_timeout_seconds=max_timeout_seconds)
        low, high = config.min_size, config.max_size
        self._sizes = sorted({round(low * (high / low) ** (i / (_SIZES - 1))) for i in range(_SIZES)})
        self._timeouts = sorted(
            {self._min_timeout, math.sqrt(self._min_timeout * self._max_timeout), self._max_timeout}
        )
        self._tables = [[[_Cell() for _ in self._timeouts] for _ in self._sizes] for _ in range(_BANDS)]
        self._seen = [0] * _BANDS
        self._random = random.Random(config.seed)
        self._band = 0
        self._phase = "fallback"

    def learn(self, size: int, timeout_seconds: float, signals: Signals) -> None:
        value = reward(size, timeout_seconds, signals, self._config.age_target_seconds)
        if value is None:
            return
        band = self._band_of(signals)
        i, j = self._nearest(size, timeout_seconds)
        self._tables[band][i][j].add(value)
        self._seen[band] += 1

    def _target(self, size: int, timeout: float, s: Signals, load: LoadSample) -> _Proposal:
        self._band = band = self._band_of(s)
        if self._backoff(size, timeout, s) is not None or s.backlog >= 2 * size:
            self._phase = "safety"
            return super()._target(size, timeout, s, load)
        if self._seen[band] < self._config.learned_min_samples:
            self._phase = "fallback"
            return super()._target(size, timeout, s, load)
        self._phase = "learning"
        table = self._tables[band]
        tried = [(cell.mean, i, j) for i, row in enumerate(table) for j, cell in enumerate(row) if cell.samples]
        _, i, j = max(tried)
        reason = "learned"
        if self._random.random() < self._config.learned_explore:
            i, j = self._random.choice(self._neighbours(i, j))
            reason = "explore"
        return self._sizes[i], self._timeouts[j], reason

    def _band_of(self, s: Signals) -> int:
        if not s.period_seconds or s.events <= 0:
            return 0
        rate = s.events / s.period_seconds
        return max(0, min(_BANDS - 1, 1 + math.floor(math.log10(rate)))) if rate >= 1 else 0

    def _nearest(self, size: int, timeout: float) -> tuple[int, int]:
        i = min(range(len(self._sizes)), key=lambda k: abs(math.log(self._sizes[k] / max(size, 1))))
        j = min(range(len(self._timeouts)), key=lambda k: abs(math.log(self._timeouts[k] / timeout)))
        return i, j

    def _neighbours(self, i: int, j: int) -> list[tuple[int, int]]:
        steps = ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
        return [(a, b) for a, b in steps if 0 <= a < len(self._sizes) and 0 <= b < len(self._timeouts)]

    def best(self, band: int) -> tuple[int, float] | None:
        """The best-known (size, timeout) of a band, None before it has a sample."""
        tried = [
            (cell.mean, i, j) for i, row in enumerate(self._tables[band]) for j, cell in enumerate(row) if cell.samples
        ]
        if not tried:
            return None
        _, i, j = max(tried)
        return self._sizes[i], self._timeouts[j]

    def describe(self) -> dict[str, Any]:
        """The phase, the samples per band and the best estimates of each band (for the dashboard)."""
        arms = []
        for band, table in enumerate(self._tables):
            cells = [
                (cell.mean, cell.samples, self._sizes[i], self._timeouts[j])
                for i, row in enumerate(table)
                for j, cell in enumerate(row)
                if cell.samples
            ]
            for mean, samples, size, timeout in sorted(cells, reverse=True)[:_SHOWN_PER_BAND]:
                arms.append(
                    {
                        "band": _band_label(band),
                        "size": size,
                        "timeout_seconds": timeout,
                        "samples": samples,
                        "reward": round(mean, 1),
                    }
                )
        return {
            "phase": self._phase,
            "band": _band_label(self._band),
            "samples": sum(self._seen),
            "min_samples": self._config.learned_min_samples,
            "arms": arms,
        }


def _band_label(band: int) -> str:
    return "<1/s" if band == 0 else f">={10 ** (band - 1):,}/s"
