"""BatchSizer: apply a sizing strategy to a running batcher, with the load monitor it reads.

The sizer gathers what the batcher reports after each flush (events, whether it filled the
batch, write time, failures) and the CPU this process used, reads the load monitor, asks its
:class:`~sse_batcher.batcher.sizing.strategies.SizingStrategy` (named by ``SizingConfig.strategy``) once per sample
interval, and applies what it decides through the batcher's levers (``set_batch_size``,
``set_batch_timeout``). A burst does not wait for the next tick: a flush that leaves two batches
or more behind asks at once (the cooldown still applies). Every change is emitted as a
``BATCH_SIZE_ADJUSTED`` event (source ``sizing``) and kept in a short history for the stats.

The server starts it in its lifespan::

    async with BatchSizer(batcher, SizingConfig()) as sizing:
        ...  # sizing.as_dict() is /api/stats "sizing"
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from sse_batcher.batcher._background import BackgroundTask
from sse_batcher.batcher.errors import BatcherError
from sse_batcher.batcher.lifecycle import Service
from sse_batcher.batcher.pipeline.breaker import BreakerStats
from sse_batcher.batcher.pipeline.facade import FlushReport, SSEEventBatcher, State
from sse_batcher.batcher.protocols import EventBatcher
from sse_batcher.batcher.sizing.load import EMPTY_LOAD, LoadMonitorConfig, LoadSample, ServerLoadMonitor, SystemLoad
from sse_batcher.batcher.sizing.named import make_strategy
from sse_batcher.batcher.sizing.strategies import Decision, Signals, SizingConfig, SizingStrategy

__all__ = ["Adjustment", "BatchSizer", "LoadSource", "SizingStats"]

logger = logging.getLogger(__name__)

# Weight of the newest decision window in the long-run write time (Gradient2's long average).
_LONG_WEIGHT = 0.1


class LoadSource(Protocol):
    """What the sizer reads from a load monitor (a fake in tests)."""

    @property
    def healthy(self) -> bool: ...

    def latest(self) -> LoadSample | None: ...


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


class BatchSizer(Service):
    """Steer ``sse_batcher.batcher``'s batch size and timeout with a strategy, from the load and its own flushes.

    Without ``monitor`` the sizer owns a :class:`ServerLoadMonitor` (over ``sampler``, default
    psutil) and starts and stops it with itself; the monitor runs even with ``config.enabled``
    False, so the dashboard still shows the load. Tests pass a fake ``monitor``, a fake ``clock``
    (monotonic, paces the cooldown) and call :meth:`evaluate` themselves. ``cpu_clock`` is this
    process's CPU time (the learned strategy's reward is events per CPU-second). ``events`` is where
    ``BATCH_SIZE_ADJUSTED`` goes (default: ``sse_batcher.batcher``); an A/B arm's sizer emits through the split,
    so the ``sizing`` source stays on one arm and its events in order.
    """

    def __init__(
        self,
        batcher: SSEEventBatcher,
        config: SizingConfig | None = None,
        *,
        monitor: LoadSource | None = None,
        sampler: Callable[[], SystemLoad] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
        events: EventBatcher | None = None,
    ) -> None:
        self._batcher = batcher
        self._announce: EventBatcher = events if events is not None else batcher
        self._config = config = config or SizingConfig()
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._owned: ServerLoadMonitor | None = None
        if monitor is None:
            monitor = self._owned = ServerLoadMonitor(
                LoadMonitorConfig(sample_seconds=config.sample_seconds),
                backlog=lambda: batcher.backlog,
                sampler=sampler,
                clock=clock,
            )
        self._monitor = monitor
        self._strategy = make_strategy(
            config,
            default_size=batcher.config.batch_size,
            max_timeout_seconds=batcher.config.batch_timeout_seconds,
        )
        self._state = State.NEW
        self._task = BackgroundTask()
        self._history: deque[Adjustment] = deque(maxlen=config.history_size)
        self._adjustments = 0
        self._emit_failures = 0
        self._long_write: float | None = None
        self._reset_window()

    @property
    def strategy(self) -> SizingStrategy:
        return self._strategy

    @property
    def monitor(self) -> LoadSource:
        return self._monitor

    def _reset_window(self) -> None:
        self._flushes = 0
        self._full_flushes = 0
        self._events = 0
        self._errors = 0
        self._write_total = 0.0
        self._writes = 0
        self._window_start = self._clock()
        self._cpu_start = self._cpu_clock()

    async def start(self) -> None:
        """Start the owned monitor, observing flushes, and deciding once per sample interval.

        Raises:
            BatcherClosedError: already started or closed.
        """
        self._begin_start()
        try:
            if self._owned is not None:
                await self._owned.start()
            if self._config.enabled:
                self._batcher.add_flush_observer(self.observe_flush)
                self._reset_window()
                await self._task.start(self._run)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop deciding (the batch size stays where it is), then the owned monitor. Idempotent."""
        if not self._begin_close():
            return
        try:
            await self._task.aclose()
        finally:
            if self._owned is not None:
                await self._owned.aclose()

    async def _run(self) -> None:
        while True:
            await anyio.sleep(self._config.sample_seconds)
            self.evaluate()

    def observe_flush(self, report: FlushReport) -> None:
        """Account for one flush (the batcher calls this); a flush that left a backlog decides now."""
        if self._state is State.CLOSED:
            return
        self._flushes += 1
        self._events += report.events
        if report.reason == "size":
            self._full_flushes += 1
        if report.stored:
            self._writes += 1
            self._write_total += report.write_seconds
        else:
            self._errors += 1
        if report.backlog >= 2 * self._batcher.batch_size and self._strategy.ready(self._clock()):
            self.evaluate()

    def evaluate(self) -> Decision | None:
        """Decide from the signals gathered since the last decision, and apply the change, if any."""
        if self._state is State.CLOSED or not self._config.enabled:
            return None
        now = self._clock()
        load = self._monitor.latest() if self._monitor.healthy else None
        if load is not None and not self._strategy.ready(now):
            return None  # keep gathering: the window of the next decision spans the cooldown
        short = self._write_total / self._writes if self._writes else None
        window = now - self._window_start
        cpu = self._cpu_clock() - self._cpu_start
        signals = Signals(
            load=load,
            backlog=self._batcher.backlog,
            flushes=self._flushes,
            full_flushes=self._full_flushes,
            events=self._events,
            errors=self._errors,
            write_seconds=short,
            long_write_seconds=self._long_write,
            period_seconds=window if window > 0 else None,
            cpu_seconds=cpu if cpu > 0 else None,
        )
        if short is not None:
            long = self._long_write
            self._long_write = short if long is None else long + _LONG_WEIGHT * (short - long)
        self._reset_window()
        batcher = self._batcher
        old_size, old_timeout = batcher.batch_size, batcher.batch_timeout_seconds
        decision = self._strategy.decide(old_size, old_timeout, signals, now)
        if decision is not None:
            batcher.set_batch_size(decision.size)
            batcher.set_batch_timeout(decision.timeout_seconds)
            self._record(old_size, old_timeout, decision, load)
        return decision

    def _record(self, old_size: int, old_timeout: float, decision: Decision, load: LoadSample | None) -> None:
        batcher = self._batcher
        adjustment = Adjustment(
            ts=time.time(),
            old_size=old_size,
            new_size=batcher.batch_size,
            old_timeout_seconds=old_timeout,
            new_timeout_seconds=batcher.batch_timeout_seconds,
            reason=decision.reason,
            load=load,
            strategy=self._strategy.name,
        )
        self._history.append(adjustment)
        self._adjustments += 1
        logger.info(
            "batch size %d -> %d, timeout %.3f -> %.3f s (%s, %s)",
            old_size,
            adjustment.new_size,
            old_timeout,
            adjustment.new_timeout_seconds,
            self._strategy.name,
            decision.reason,
        )
        try:
            self._announce.emit("BATCH_SIZE_ADJUSTED", adjustment.as_dict(), source="sizing")
        except BatcherError as exc:  # closing, or the buffer is full: the history still has it
            self._emit_failures += 1
            logger.warning("could not emit BATCH_SIZE_ADJUSTED: %s", exc)

    def statistics(self) -> SizingStats:
        """Return a frozen snapshot: strategy, current levers, latest load, recent changes, breaker."""
        batcher = self._batcher
        enabled = self._config.enabled
        return SizingStats(
            dynamic=enabled,
            strategy=self._strategy.name if enabled else "fixed",
            strategy_state=self._strategy.describe() if enabled else {},
            batch_size=batcher.batch_size,
            batch_timeout_seconds=batcher.batch_timeout_seconds,
            min_size=self._config.min_size,
            max_size=self._config.max_size,
            load=self._monitor.latest(),
            monitor_healthy=self._monitor.healthy,
            history=tuple(self._history),
            adjustments=self._adjustments,
            emit_failures=self._emit_failures,
            breaker=batcher.statistics().breaker,
        )

    def as_dict(self) -> dict[str, Any]:
        """Return :meth:`statistics` as the JSON-ready ``sizing`` dict of /api/stats."""
        return self.statistics().as_dict()
