"""BatchSizer: apply a sizing strategy to a running batcher, with the load monitor it reads.

The sizer gathers what the batcher reports after each flush (events, whether it filled the
batch, write time, failures) and the CPU this process used, reads the load monitor, and once per
sample interval asks its :class:`~sse_batcher.batcher.sizing.strategies.SizingStrategy` (named by
``SizingConfig.strategy``) for a decision about the period that ended. A burst does not wait for
the next tick: a flush that leaves two batches or more behind wakes the sizer's task at once, and
while a backlog waits, growth steps take no cooldown.

Deciding and applying are kept apart, so data flows one way: the flush loop only hands its report
to :meth:`BatchSizer.observe_flush`, which records it (and may wake the task) but never acts from
inside the flush. :meth:`BatchSizer.decide` turns the period's signals into a ``Decision`` without
touching the batcher; the sizer's own task applies it through the batcher's levers
(``set_batch_size``, ``set_batch_timeout``), emits it as a ``BATCH_SIZE_ADJUSTED`` event (source
``sizing``) and keeps it in a short history for the stats.

The server starts it in its lifespan::

    async with BatchSizer(batcher, SizingConfig()) as sizing:
        ...  # sizing.as_dict() is /api/stats "sizing"
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from sse_batcher.batcher._background import BackgroundTask
from sse_batcher.batcher.errors import BatcherError
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.pipeline.facade import FlushReport, SSEEventBatcher
from sse_batcher.batcher.protocols import EventBatcher
from sse_batcher.batcher.sizing._stats import Adjustment, SizingStats
from sse_batcher.batcher.sizing.load import LoadMonitorConfig, LoadSample, ServerLoadMonitor, SystemLoad
from sse_batcher.batcher.sizing.named import make_strategy
from sse_batcher.batcher.sizing.strategies import Decision, Signals, SizingConfig, SizingStrategy

__all__ = ["Adjustment", "BatchSizer", "LoadSource", "SizingStats"]

logger = logging.getLogger(__name__)

# Weight of the newest period in the long-run write time (Gradient2's long average).
_LONG_WEIGHT = 0.1


class LoadSource(Protocol):
    """What the sizer reads from a load monitor (a fake in tests)."""

    @property
    def healthy(self) -> bool: ...

    def latest(self) -> LoadSample | None: ...


class BatchSizer(Service):
    """Steer a batcher's batch size and timeout with a strategy, from the load and its own flushes.

    Without ``monitor`` the sizer owns a :class:`ServerLoadMonitor` (over ``sampler``, default
    psutil) and starts and stops it with itself; the monitor runs even with ``config.enabled``
    False, so the dashboard still shows the load. Tests pass a fake ``monitor``, a fake ``clock``
    (monotonic, paces the cooldown) and call :meth:`evaluate` themselves. ``cpu_clock`` is this
    process's CPU time (the learned strategy's reward is events per CPU-second). ``events`` is where
    ``BATCH_SIZE_ADJUSTED`` goes (default: the batcher); an A/B arm's sizer emits through the split,
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
        # Set by observe_flush (on the event loop's thread, like the task that waits on it) when a
        # backlog calls for a decision before the next tick.
        self._decide_now = anyio.Event()
        self._history: deque[Adjustment] = deque(maxlen=config.history_size)
        self._adjustments = 0
        self._emit_failures = 0
        self._long_write: float | None = None
        self._reset_period()

    @property
    def strategy(self) -> SizingStrategy:
        return self._strategy

    @property
    def monitor(self) -> LoadSource:
        return self._monitor

    def _reset_period(self) -> None:
        self._flushes = 0
        self._full_flushes = 0
        self._events = 0
        self._errors = 0
        self._write_total = 0.0
        self._writes = 0
        self._period_start = self._clock()
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
                self._reset_period()
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
        """Decide and apply once per sample interval, and at once when a flush left a backlog."""
        sample = self._config.sample_seconds
        next_tick = anyio.current_time() + sample
        while True:
            with anyio.move_on_after(next_tick - anyio.current_time()):
                await self._decide_now.wait()
            if self._decide_now.is_set():
                self._decide_now = anyio.Event()
            else:
                next_tick = anyio.current_time() + sample
            self.evaluate()

    def observe_flush(self, report: FlushReport) -> None:
        """Record one flush (the flush loop calls this); a flush that left a backlog wakes the task.

        It never decides here: that would resize the batcher and emit into its buffer from inside
        the flush that called it.
        """
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
        if report.backlog >= 2 * self._batcher.batch_size:
            self._decide_now.set()

    def decide(self) -> Decision | None:
        """End the period: the change the strategy asks for, from the signals gathered in it, or None.

        Reads the batcher's size, timeout and backlog and changes nothing in it; :meth:`evaluate`
        applies what this returns.
        """
        if self._state is State.CLOSED or not self._config.enabled:
            return None
        now = self._clock()
        load = self._monitor.latest() if self._monitor.healthy else None
        backlogged = self._strategy.backlogged(self._batcher.batch_size, self._batcher.backlog)
        if load is not None and not backlogged and not self._strategy.ready(now):
            return None  # keep gathering: the period of the next decision spans the cooldown
        short = self._write_total / self._writes if self._writes else None
        period = now - self._period_start
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
            period_seconds=period if period > 0 else None,
            cpu_seconds=cpu if cpu > 0 else None,
        )
        if short is not None:
            long = self._long_write
            self._long_write = short if long is None else long + _LONG_WEIGHT * (short - long)
        self._reset_period()
        batcher = self._batcher
        return self._strategy.decide(batcher.batch_size, batcher.batch_timeout_seconds, signals, now)

    def evaluate(self) -> Decision | None:
        """One step of the sizer's task: :meth:`decide`, then apply the decision, if there is one."""
        decision = self.decide()
        if decision is not None:
            self._apply(decision)
        return decision

    def _apply(self, decision: Decision) -> None:
        """Resize the batcher, then record the change and announce it as ``BATCH_SIZE_ADJUSTED``."""
        batcher = self._batcher
        old_size, old_timeout = batcher.batch_size, batcher.batch_timeout_seconds
        batcher.set_batch_size(decision.size)
        batcher.set_batch_timeout(decision.timeout_seconds)
        adjustment = Adjustment(
            ts=time.time(),
            old_size=old_size,
            new_size=batcher.batch_size,
            old_timeout_seconds=old_timeout,
            new_timeout_seconds=batcher.batch_timeout_seconds,
            reason=decision.reason,
            load=decision.load,
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
