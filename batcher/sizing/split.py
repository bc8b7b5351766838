"""A live A/B of two sizing strategies: two batchers over one store, sources split by a stable hash.

Each arm is a whole :class:`SSEEventBatcher` (its own buffer, batch size, timeout, flush loop and
dead-letter directory), so the events of arm B's sources really are batched under arm B's size
and timeout, and each arm gets its own :class:`~sse_batcher.batcher.sizing.sizer.BatchSizer`. Both write to the same
store, whose write lock keeps ids in commit order across them, and hand their commits to the same
listeners. Which arm a source goes to, and how a request is cut into the arms' shares, is in
``_routing.py``.

:class:`SplitBatcher` has the batcher's surface the server and the workers use
(:class:`EventBatcher`). ``emit_many`` and ``publish`` check both arms' shares first (valid, open,
room in each buffer) and apply them only once both pass, so an invalid event or a full arm refuses
the whole request. One race remains: an emitter (a worker thread, another request) can take an
arm's room between the check and the apply, or the batcher can start closing or refusing intake
there; arm B's share is then refused after arm A's was accepted. The server answers that with an
error like any refusal; a retry with the same idempotency key stores nothing twice, one without a key
stores arm A's share again.

What it measures per arm, for /api/stats ``ab``, is in ``_arm_stats.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from sse_batcher.batcher.config import BatcherConfig
from sse_batcher.batcher.errors import ConfigError, EventValidationError
from sse_batcher.batcher.events import NORMAL
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.pipeline.facade import SSEEventBatcher
from sse_batcher.batcher.pipeline.intake import Item
from sse_batcher.batcher.protocols import EventStore, Listener
from sse_batcher.batcher.sizing._arm_stats import ArmMeter, ArmStats, summed_stats
from sse_batcher.batcher.sizing._routing import arm_of, reindexed, shares_of
from sse_batcher.batcher.stats import BatcherStats

__all__ = ["ArmStats", "SplitBatcher", "arm_of"]


class SplitBatcher(Service):
    """Route each source to arm A or arm B by :func:`arm_of`; otherwise behave as one batcher.

    Raises:
        ConfigError: ``share_b`` is outside [0, 1], or the arms share a dead-letter directory.
    """

    def __init__(
        self, arm_a: SSEEventBatcher, arm_b: SSEEventBatcher, *, share_b: float, clock: Callable[[], float] = time.time
    ) -> None:
        if not 0 <= share_b <= 1:
            raise ConfigError(f"share_b must be in [0, 1], got {share_b!r}")
        if arm_a.config.data_dir == arm_b.config.data_dir:
            raise ConfigError("the two arms need their own data_dir (each has a dead-letter file)")
        self._arms = (arm_a, arm_b)
        self._share_b = share_b
        self._meters = (ArmMeter(clock), ArmMeter(clock))
        for arm, meter in zip(self._arms, self._meters, strict=True):
            arm.add_listener(meter.ages)

    @property
    def arms(self) -> tuple[SSEEventBatcher, SSEEventBatcher]:
        return self._arms

    def arm_for(self, source: object) -> SSEEventBatcher:
        """The arm ``source`` (None: the default source) is routed to; an invalid one goes to arm A,
        whose ``emit`` refuses it."""
        return self._arms[self._route(source)]

    def _route(self, source: object) -> int:
        """The index of :meth:`arm_for`'s arm, counting ``source`` in that arm's meter."""
        name = source if source is not None else self.config.default_source
        if not isinstance(name, str):
            return 0
        index = arm_of(name, self._share_b)
        self._meters[index].saw(name)
        return index

    # -- the batcher's surface ---------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._arms[0].state

    @property
    def config(self) -> BatcherConfig:
        return self._arms[0].config

    @property
    def store(self) -> EventStore:
        return self._arms[0].store

    @property
    def batch_size(self) -> int:
        return self._arms[0].batch_size

    @property
    def batch_timeout_seconds(self) -> float:
        return self._arms[0].batch_timeout_seconds

    @property
    def backlog(self) -> int:
        return sum(arm.backlog for arm in self._arms)

    def emit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        timeout: float | None = None,
        wait: bool = False,
    ) -> int:
        """Emit on the source's arm (see :meth:`SSEEventBatcher.emit`, which raises the same errors)."""
        arm = self.arm_for(source)
        return arm.emit(
            type, data, source=source, priority=priority, key=key, batched=batched, timeout=timeout, wait=wait
        )

    async def aemit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        wait: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Emit on the source's arm, waiting for room (see :meth:`SSEEventBatcher.aemit`)."""
        arm = self.arm_for(source)
        return await arm.aemit(
            type, data, source=source, priority=priority, key=key, batched=batched, wait=wait, timeout=timeout
        )

    def emit_many(
        self,
        events: Sequence[dict[str, Any]],
        *,
        default_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[int]:
        """Emit each arm's share once both arms have checked theirs: all or nothing, seqs in input order.

        Raises:
            EventValidationError: an event is invalid; ``index`` names it in ``events``; nothing was accepted.
            BufferFullError: an arm's share did not fit; nothing was accepted (but see the module's race).
            BatcherClosedError: the batcher is closing or closed.
        """
        seqs = [0] * len(events)
        for arm, indices, items in self._prepared(events, default_source, idempotency_key):
            for i, seq in zip(indices, arm.emit_prepared(items), strict=True):
                seqs[i] = seq
        return seqs

    def _prepared(
        self, events: Sequence[dict[str, Any]], default_source: str | None, idempotency_key: str | None
    ) -> list[tuple[SSEEventBatcher, list[int], list[Item]]]:
        """Each arm's share checked by that arm (nothing accepted yet): both pass, or this raises."""
        fallback = default_source or self.config.default_source
        prepared = []
        for index, indices, chosen in shares_of(events, fallback, idempotency_key, self._route):
            arm = self._arms[index]
            try:
                prepared.append((arm, indices, arm.prepare_many(chosen, default_source=fallback)))
            except EventValidationError as exc:
                raise reindexed(exc, indices) from None
        return prepared

    async def publish(
        self,
        events: Sequence[dict[str, Any]],
        *,
        timeout: float | None = None,
        default_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[int]:
        """Publish each arm's share on that arm and wait for both commits; ids in input order.

        Raises:
            EventValidationError: an event is invalid (``index`` names it in ``events``); nothing was accepted.
            BufferFullError: an arm's share did not fit; nothing was accepted (but see the module's race).
            BatcherClosedError: the batcher is closing or closed.
            AckTimeoutError: not all committed within ``timeout``.
        """
        prepared = self._prepared(events, default_source, idempotency_key)
        ids = [0] * len(events)

        failures: list[Exception] = []

        async def one(arm: SSEEventBatcher, indices: list[int], items: list[Item]) -> None:
            try:
                got = await arm.publish_prepared(items, timeout=timeout)
            except Exception as exc:  # raised as it is, below, not wrapped in an ExceptionGroup
                failures.append(exc)
                return
            for i, message_id in zip(indices, got, strict=True):
                ids[i] = message_id

        async with anyio.create_task_group() as tg:
            for arm, indices, items in prepared:
                tg.start_soon(one, arm, indices, items)
        if failures:
            raise failures[0]
        return ids

    def end_waits(self) -> None:
        """Answer every publish waiting on either arm now (``SSEEventBatcher.end_waits``)."""
        for arm in self._arms:
            arm.end_waits()

    async def flush(self, timeout: float | None = None) -> bool:
        """Flush both arms at once; True when both stored everything."""
        results = [False, False]

        async def one(i: int) -> None:
            results[i] = await self._arms[i].flush(timeout)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0)
            tg.start_soon(one, 1)
        return all(results)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after each commit of either arm; returns a function that removes it."""
        removers = [arm.add_listener(listener) for arm in self._arms]

        def remove() -> None:
            for remover in removers:
                remover()

        return remove

    def statistics(self) -> BatcherStats:
        """Both arms' counters added up, flags OR'ed; size, timeout, state and breaker are arm A's."""
        return summed_stats(*(arm.statistics() for arm in self._arms))

    def get_stats(self) -> dict[str, Any]:
        """Return :meth:`statistics` as a JSON-ready dict."""
        return self.statistics().as_dict()

    def arm_statistics(self) -> tuple[ArmStats, ArmStats]:
        """Each arm's share, sources seen, stored counts, age at commit and store latency."""
        shares = (1 - self._share_b, self._share_b)
        a, b = (
            meter.stats(share, arm.statistics())
            for meter, share, arm in zip(self._meters, shares, self._arms, strict=True)
        )
        return a, b

    async def start(self) -> None:
        """Start both arms (a half-started split is closed again).

        Raises:
            BatcherClosedError: already started or closed.
        """
        await self._arms[0].start()
        try:
            await self._arms[1].start()
        except BaseException:
            await self._arms[0].aclose()
            raise

    async def aclose(self, timeout: float | None = None) -> None:
        """Close arm B, then arm A, each within ``timeout``. Idempotent.

        One after the other, in this task: each batcher's task group was entered by the task that
        started it and must be left by it too.
        """
        try:
            await self._arms[1].aclose(timeout)
        finally:
            await self._arms[0].aclose(timeout)
