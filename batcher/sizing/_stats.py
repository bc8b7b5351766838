"""What the sizer reports: each change it made (:class:`Adjustment`) and a snapshot (:class:`SizingStats`).

Apart from ``sizer.py`` so that module holds the deciding and applying alone; both are re-exported
there. ``server/`` renders :class:`SizingStats` as /api/stats ``sizing``; an :class:`Adjustment` is
also the data of the ``BATCH_SIZE_ADJUSTED`` event that announces the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sse_batcher.batcher.sizing.load import EMPTY_LOAD, LoadSample
from sse_batcher.batcher.stats import BreakerStats

__all__ = ["Adjustment", "SizingStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjustment:
    """One change of batch size or timeout; ``ts`` is wall-clock time, like an event's."""

    ts: float
    old_size: int
    new_size: int
    old_timeout_seconds: float
    new_timeout_seconds: float
    reason: str
    load: LoadSample | None
    strategy: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the event data of ``BATCH_SIZE_ADJUSTED`` (also a ``sizing.history`` entry)."""
        return {
            "ts": self.ts,
            "strategy": self.strategy,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_timeout_seconds": self.old_timeout_seconds,
            "new_timeout_seconds": self.new_timeout_seconds,
            "reason": self.reason,
            "load": None if self.load is None else self.load.as_dict(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingStats:
    """A snapshot of sizing, rendered by ``server/`` as /api/stats ``sizing``.

    ``strategy`` names the strategy in charge (``fixed`` when dynamic sizing is off);
    ``strategy_state`` is what it has learned (``learned`` only; empty for the others).
    """

    dynamic: bool
    strategy: str
    strategy_state: dict[str, Any]
    batch_size: int
    batch_timeout_seconds: float
    min_size: int
    max_size: int
    load: LoadSample | None
    monitor_healthy: bool
    history: tuple[Adjustment, ...]
    adjustments: int
    emit_failures: int
    breaker: BreakerStats | None

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape the dashboard reads."""
        return {
            "dynamic": self.dynamic,
            "strategy": self.strategy,
            "strategy_state": self.strategy_state,
            "batch_size": self.batch_size,
            "batch_timeout_seconds": self.batch_timeout_seconds,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "load": dict(EMPTY_LOAD) if self.load is None else self.load.as_dict(),
            "monitor_healthy": self.monitor_healthy,
            "history": [a.as_dict() for a in self.history],
            "adjustments": self.adjustments,
            "emit_failures": self.emit_failures,
            "breaker": None if self.breaker is None else self.breaker.as_dict(),
        }
