"""Everything one running app owns: database, store, batcher, hub, demo workers, and their shutdown.

:meth:`Runtime.open` starts them in data-flow order and stops them in reverse; the app's lifespan
keeps the result on ``app.state.runtime`` (never in a global, so two apps can share a process).

Shutdown has two halves, because uvicorn waits for open responses before it runs the lifespan's
shutdown, and an SSE stream never ends on its own:

1. :meth:`Runtime.drain` (asked for by :class:`sse_batcher.server.serving.serve.GracefulServer` when uvicorn starts
   shutting down, or by sse-starlette's exit detection from inside a stream when the app runs
   under some other server): refuse new publishes and streams, flush the batcher so every
   accepted event is stored and fanned out, then close the hub, so each stream writes what it has
   queued and ends. Then uvicorn's wait for connections is short.
2. The lifespan's exit: drain if nobody did, stop the demo workers, close the batcher (storing
   anything emitted since), the store, and the embedded PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol

import anyio
import psutil
from starlette.requests import HTTPConnection

from sse_batcher.batcher import AggregationRules, BatcherConfig, EventBatcher, PostgresStore, SSEEventBatcher, State
from sse_batcher.batcher.digests import Digester
from sse_batcher.batcher.digests.windows import quiet_filter
from sse_batcher.batcher.log import LogFollower
from sse_batcher.batcher.pipeline import CircuitBreaker
from sse_batcher.batcher.sizing import BatchSizer, ServerLoadMonitor, SplitBatcher
from sse_batcher.batcher.sizing.load import LoadMonitorConfig
from sse_batcher.batcher.sizing.named import pin_rule_timeouts
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.nodes.node import NodeFigures, NodeHeartbeat, NodeSlot, default_node_id
from sse_batcher.server.stream.hub import Hub
from sse_batcher.server.stream.latency import DeliveryLatency

__all__ = ["DemoFarmLike", "Runtime", "runtime_of"]

logger = logging.getLogger(__name__)


class DemoFarmLike(Protocol):
    """What the server needs of ``sse_batcher.workers.demo.farm.DemoFarm``."""

    def burst(self, count: int) -> int: ...

    def worker_stats(self) -> list[dict[str, Any]]: ...

    async def wind_down(self) -> None: ...


class Runtime:
    """The running parts of one app; made by :meth:`open`, read by the endpoints."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        store: PostgresStore,
        batcher: EventBatcher,
        hub: Hub,
        follower: LogFollower,
        database: str,
        delivery_latency: DeliveryLatency | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.batcher = batcher
        self.hub = hub
        self.follower = follower
        self.database = database
        self.farm: DemoFarmLike | None = None
        self.sizing: BatchSizer | None = None
        # With a live A/B (SSE_BATCH_STRATEGY_B), the sizer of each arm; ``sizing`` is arm A's.
        self.arm_sizers: tuple[BatchSizer, BatchSizer] | None = None
        self.node: NodeHeartbeat | None = None
        # Issue 10: event ages at first hand-off to a client; the hub records into this one.
        self.delivery_latency = delivery_latency if delivery_latency is not None else DeliveryLatency()
        self.digester: Digester | None = None
        self.started_at = time.time()
        self.task_failures = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading is meaningless; prime it
        self._drain_requested = anyio.Event()
        self._drained = anyio.Event()

    @classmethod
    @asynccontextmanager
    async def open(cls, config: ServerConfig) -> AsyncIterator[Runtime]:
        """Start everything ``config`` asks for; stop it all, in reverse, on exit."""
        async with AsyncExitStack() as stack:
            dsn = config.database_url
            if dsn is None:
                from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

                embedded = EmbeddedPostgres(config.data_dir)
                dsn = await anyio.to_thread.run_sync(embedded.start)
                stack.push_async_callback(_stop_embedded, embedded)
            store_config = config.store.store_config(dsn)
            store = await stack.enter_async_context(PostgresStore(store_config))
            # -- nodes (issue 9): a slot of its own under data_dir, so its dead-letter file is
            # its own; taken before the batcher starts (which writes back what the slot holds)
            # and released after it closed.
            slot = stack.enter_context(NodeSlot.take(config.data_dir, config.slot))
            batcher_config = replace(config.batcher, data_dir=slot.directory)
            # --
            rules = AggregationRules.from_toml(config.rules_file) if config.rules_file is not None else None
            if rules is not None:  # a rule naming a strategy waits as that strategy's timeout says
                cap = config.batcher.batch_timeout_seconds
                rules = pin_rule_timeouts(rules, config.sizing, max_timeout_seconds=cap)
            batcher = _make_batcher(config, batcher_config, store, rules)
            delivery_latency = DeliveryLatency()
            digest_rules = rules.digests() if rules is not None else {}
            hub = Hub(
                store,
                queue_size=config.client_queue_size,
                max_clients=config.max_clients,
                fanout_interval_seconds=config.fanout_interval_seconds,
                fanout_interval_max_seconds=config.fanout_interval_max_seconds,
                ping_seconds=config.ping_seconds,
                send_timeout_seconds=config.client_send_timeout_seconds,
                on_fanout=delivery_latency.observe_messages,
                hold_back=quiet_filter(digest_rules),
            )
            # The hub's one feed: every node's commits, read back from the log in id order. Started
            # before the batcher, so a dead-letter file written back at start reaches clients too.
            follower = LogFollower(store_config, hub.publish, poll_seconds=config.follow_poll_seconds)
            await stack.enter_async_context(follower)
            # A local commit wakes the follower at once instead of waiting for its notification.
            stack.callback(batcher.add_listener(follower.poke))
            await batcher.start()
            stack.push_async_callback(batcher.aclose)
            # -- digests (issue 14): windows in PostgreSQL, closed by whichever node gets there first.
            digester = None
            if digest_rules:
                digester = Digester(
                    store_config,
                    digest_rules,
                    interval_seconds=config.digest_interval_seconds,
                    grace_seconds=config.digest_grace_seconds,
                    keep_closed_seconds=store_config.retention_seconds + 24 * 3600,
                )
                await stack.enter_async_context(digester)
            # --
            runtime = cls(
                config,
                store=store,
                batcher=batcher,
                hub=hub,
                follower=follower,
                database=config.describe_database(),
                delivery_latency=delivery_latency,
            )
            runtime.digester = digester
            tasks = await stack.enter_async_context(anyio.create_task_group())
            # Runs before the task group exits (and after everything entered later has stopped),
            # so the background loops end instead of being waited for.
            stack.callback(tasks.cancel_scope.cancel)
            tasks.start_soon(runtime._supervise, "retention", store.run_retention)
            tasks.start_soon(runtime._supervise, "hub", hub.run)
            tasks.start_soon(runtime._drain_when_asked)
            if digester is not None:
                tasks.start_soon(runtime._supervise, "digests", digester.run)
            # -- nodes (issue 9): the heartbeat row; the first beat is written before serving.
            runtime.node = NodeHeartbeat(
                store,
                node_id=config.node_id or default_node_id(slot.index),
                slot=slot.index,
                interval_seconds=config.node_heartbeat_seconds,
                figures=runtime._node_figures,
            )
            await runtime.node.migrate()
            await tasks.start(runtime.node.run)
            # --
            runtime.sizing = await _start_sizing(runtime, stack)
            if config.demo:
                runtime.farm = await _start_demo(runtime, stack)
            try:
                yield runtime
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(config.shutdown_timeout_seconds / 2):
                    await runtime.drain()

    # -- shutdown ----------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False once a drain was asked for: publishes and new streams are refused (503)."""
        return not self._drain_requested.is_set() and self.batcher.state is State.RUNNING

    def request_drain(self) -> None:
        """Ask for :meth:`drain` without waiting for it; safe to call many times."""
        self._drain_requested.set()

    async def drain(self) -> None:
        """Refuse new work, store and fan out every accepted event, end every stream; wait for it."""
        self.request_drain()
        await self._drained.wait()

    async def _drain_when_asked(self) -> None:
        try:
            await self._drain_requested.wait()
            logger.info("draining: flushing the batcher, then closing %d streams", self.hub.clients)
            if self.farm is not None:
                # Let the demo jobs in progress finish first, so their last events are flushed
                # and delivered with everything else instead of arriving after the streams close.
                with anyio.move_on_after(self.config.shutdown_timeout_seconds * 0.25):
                    await self.farm.wind_down()
            with anyio.move_on_after(self.config.shutdown_timeout_seconds * 0.3):
                if not await self.batcher.flush():
                    logger.warning("shutdown flush left events in the dead-letter file")
            # What the flush committed reaches the hub through the log: wait for it to arrive.
            if not await self.follower.wait_caught_up(self.config.shutdown_timeout_seconds * 0.1):
                logger.warning("the log follower had not caught up when the streams closed")
        except Exception:
            self.task_failures += 1
            logger.exception("shutdown flush failed")
        finally:
            self.hub.close()
            self._drained.set()

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; a failure is logged and counted, and never takes the app down."""
        try:
            await loop()
        except Exception:
            self.task_failures += 1
            logger.exception("background task %s failed", name)

    # -- nodes (issue 9) ---------------------------------------------------------------------
    async def log_position(self) -> tuple[int | None, int | None]:
        """Return (the last id handed to the hub, the newest committed id): how far behind this node is.

        Both come from the log follower: its cursor, and the newest id it knows committed (from
        NOTIFY payloads and local commits), so a heartbeat costs no extra read.
        """
        stats = self.follower.statistics()
        return stats.last_id, stats.head_id

    async def _node_figures(self) -> NodeFigures:
        last_id, newest_id = await self.log_position()
        hub = self.hub.statistics()
        return NodeFigures(
            events_in=self.batcher.statistics().events_emitted,
            messages_out=hub.messages_sent,
            clients=hub.clients,
            follower_last_id=last_id,
            newest_id=newest_id,
        )

    # -- statistics --------------------------------------------------------------------------
    def process_stats(self) -> dict[str, float | int]:
        """CPU percent since the last call, and resident memory."""
        return {"cpu_percent": self._process.cpu_percent(None), "rss_bytes": self._process.memory_info().rss}

    def sizing_stats(self) -> dict[str, Any]:
        """What the sizing policy decided, and the load it saw."""
        if self.sizing is not None:
            return self.sizing.as_dict()
        return {
            "dynamic": False,
            "strategy": "fixed",
            "strategy_state": {},
            "batch_size": self.batcher.batch_size,
            "batch_timeout_seconds": self.batcher.batch_timeout_seconds,
            "load": {},
            "history": [],
            "breaker": {"state": "closed"},
        }

    def ab_stats(self) -> dict[str, Any]:
        """The live A/B's arms side by side (``{"arms": []}`` without one)."""
        batcher, sizers = self.batcher, self.arm_sizers
        if not isinstance(batcher, SplitBatcher) or sizers is None:
            return {"arms": []}
        arms = batcher.arm_statistics()
        strategies = [sizer.statistics().strategy for sizer in sizers]
        return {"arms": [{"strategy": name, **arm.as_dict()} for name, arm in zip(strategies, arms, strict=True)]}

    def worker_stats(self) -> list[dict[str, Any]]:
        """Per-worker figures of the demo farm; empty without it."""
        return self.farm.worker_stats() if self.farm is not None else []


def runtime_of(request: HTTPConnection) -> Runtime:
    """The runtime the app's lifespan started.

    Raises:
        RuntimeError: the lifespan never ran (a mounted app whose parent does not run it).
    """
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise RuntimeError(
            "sse-batcher's lifespan has not run; when mounting the app, give the parent "
            "lifespan=app.router.lifespan_context (see the README)"
        )
    return runtime


async def _stop_embedded(embedded: Any) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(embedded.stop)


def _make_batcher(
    config: ServerConfig, batcher_config: BatcherConfig, store: PostgresStore, rules: AggregationRules | None
) -> EventBatcher:
    """One batcher, or with SSE_BATCH_STRATEGY_B two arms over the same store, each with its own
    dead-letter directory and breaker, split by source."""

    def breaker() -> CircuitBreaker:
        return CircuitBreaker(config.breaker_failures, config.breaker_reset_seconds)

    batcher = SSEEventBatcher(store, batcher_config, rules=rules, breaker=breaker())
    if config.sizing.strategy_b is None:
        return batcher
    arm_b = replace(batcher_config, data_dir=batcher_config.data_dir / "ab-arm-b")
    return SplitBatcher(
        batcher, SSEEventBatcher(store, arm_b, rules=rules, breaker=breaker()), share_b=config.sizing.ab_split
    )


async def _start_sizing(runtime: Runtime, stack: AsyncExitStack) -> BatchSizer:
    """Start the batch sizer and its load monitor (which only reports when sizing is disabled).

    With a live A/B each arm gets a sizer of its own strategy; both read one load monitor.
    """
    config, batcher = runtime.config.sizing, runtime.batcher
    if not isinstance(batcher, SplitBatcher) or config.strategy_b is None:
        if not isinstance(batcher, SSEEventBatcher):  # pragma: no cover - _make_batcher makes one of the two
            raise TypeError(f"cannot size a {type(batcher).__name__}")
        return await stack.enter_async_context(BatchSizer(batcher, config))
    monitor = ServerLoadMonitor(
        LoadMonitorConfig(sample_seconds=config.sample_seconds), backlog=lambda: batcher.backlog
    )
    await stack.enter_async_context(monitor)
    arm_a, arm_b = batcher.arms
    sizer_a = await stack.enter_async_context(BatchSizer(arm_a, config, monitor=monitor, events=batcher))
    config_b = replace(config, strategy=config.strategy_b)
    sizer_b = await stack.enter_async_context(BatchSizer(arm_b, config_b, monitor=monitor, events=batcher))
    runtime.arm_sizers = (sizer_a, sizer_b)
    return sizer_a


async def _start_demo(runtime: Runtime, stack: AsyncExitStack) -> DemoFarmLike:
    """Start the demo workers; imported here so the server runs without the workers package.

    Raises:
        RuntimeError: ``sse_batcher.workers.demo.farm`` cannot be imported (run with ``--no-demo``).
    """
    try:
        from sse_batcher.workers.demo.farm import DemoFarm
    except ImportError as exc:
        raise RuntimeError(f"the demo workers are unavailable ({exc}); start with --no-demo") from exc
    farm: DemoFarmLike = await stack.enter_async_context(DemoFarm(runtime.batcher, rate=runtime.config.demo_rate))
    return farm
