"""Opening one app's parts in data-flow order, and closing them in reverse: :func:`open_runtime`.

Kept apart from :class:`~sse_batcher.server.app.runtime.Runtime` because the order is the whole
point of it and reads best in one place: database, store, node slot, batcher, hub, log follower,
digests, background tasks, heartbeat, sizing, demo workers. Each part is entered on one exit stack,
so whatever started is stopped, in reverse, however the start or the app ends; the runtime it
yields only holds the parts and drains them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import anyio

from sse_batcher.batcher import AggregationRules, BatcherConfig, EventBatcher, PostgresStore, SSEEventBatcher
from sse_batcher.batcher.digests import Digester
from sse_batcher.batcher.digests.live import quiet_filter
from sse_batcher.batcher.log import LogFollower
from sse_batcher.batcher.pipeline import CircuitBreaker
from sse_batcher.batcher.sizing import BatchSizer, ServerLoadMonitor, SplitBatcher
from sse_batcher.batcher.sizing.load import LoadMonitorConfig
from sse_batcher.batcher.sizing.named import pin_rule_timeouts
from sse_batcher.server.app.history import Reading, StatsHistory
from sse_batcher.server.app.host_exit import host_server, watch_host_exit
from sse_batcher.server.app.runtime import DemoFarmLike, Runtime
from sse_batcher.server.app.shutdown_budget import ShutdownBudget
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.nodes.database import embedded_database
from sse_batcher.server.nodes.node import NodeHeartbeat, NodeSlot, default_node_id
from sse_batcher.server.nodes.orphans import ARM_B_DIR, adopt_orphans
from sse_batcher.server.stream.hub import Hub
from sse_batcher.server.stream.latency import DeliveryLatency

__all__ = ["open_runtime"]

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_runtime(config: ServerConfig) -> AsyncIterator[Runtime]:
    """Start everything ``config`` asks for and yield the runtime; drain, then stop it all in reverse, on exit."""
    async with AsyncExitStack() as stack:
        dsn = config.database_url
        if dsn is None:  # shared with every other server and program on this data directory
            dsn = await stack.enter_async_context(embedded_database(config.data_dir))
        store_config = config.store.store_config(dsn)
        rules = AggregationRules.from_toml(config.rules_file) if config.rules_file is not None else None
        # The rules say which types close a key in the latest state, which the store keeps.
        final_types = (rules or AggregationRules()).final_types()
        store_config = replace(store_config, state_final_types=final_types)
        # Every close after the drain takes what is left of one shutdown bound, not a bound of its own.
        budget = ShutdownBudget(config.shutdown_timeout_seconds)
        store = PostgresStore(store_config)
        await store.start()

        async def close_store() -> None:  # last: what the bound has left, for connections still in use
            await store.aclose(budget.left(1.0))

        stack.push_async_callback(close_store)
        # A slot of its own under data_dir, so this node's dead-letter file is its own; taken before
        # the batcher starts (which writes back what the slot holds) and released after it closed.
        slot = stack.enter_context(NodeSlot.take(config.data_dir, config.slot))
        # Files of slots no process runs in, and of an arm B switched off, join this node's file,
        # whose write-back runs first.
        ab = config.sizing.strategy_b is not None
        await anyio.to_thread.run_sync(lambda: adopt_orphans(slot, config.data_dir, ab=ab, workers=config.workers))
        batcher_config = replace(config.batcher, data_dir=slot.directory)
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
            replay_pages=max(1, config.replay_budget_bytes // config.store.replay_page_bytes),
        )
        # The hub's one feed: every node's commits, read back from the log in id order. Started
        # before the batcher, so a dead-letter file written back at start reaches clients too.
        # Counted on the way, for the dashboard's last five minutes (GET /api/history).
        history = StatsHistory()
        follower = LogFollower(store_config, history.counting(hub.publish), poll_seconds=config.follow_poll_seconds)
        await stack.enter_async_context(follower)
        # A local commit wakes the follower at once instead of waiting for its notification.
        stack.callback(batcher.add_listener(follower.poke))
        await batcher.start()

        async def close_batcher() -> None:  # what it cannot store by then goes to the dead-letter file
            await batcher.aclose(budget.left(0.8))

        stack.push_async_callback(close_batcher)
        # Digest windows live in PostgreSQL, closed by whichever node gets there first.
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
        runtime = Runtime(
            config,
            store=store,
            batcher=batcher,
            hub=hub,
            follower=follower,
            database=config.describe_database(),
            delivery_latency=delivery_latency,
            budget=budget,
        )
        runtime.digester = digester
        runtime.history = history
        tasks = await stack.enter_async_context(anyio.create_task_group())
        # Runs before the task group exits (and after everything entered later has stopped),
        # so the background loops end instead of being waited for.
        stack.callback(tasks.cancel_scope.cancel)
        runtime.start_background(tasks)
        tasks.start_soon(history.run, lambda: _reading(runtime))
        # Under uvicorn (serve, or an app that mounts this one), its shutdown drains the runtime,
        # so open streams end instead of keeping uvicorn waiting for them.
        host = host_server()
        if host is not None:
            tasks.start_soon(watch_host_exit, host, runtime.request_drain)
        # The heartbeat row: the first beat is written before serving.
        runtime.node = NodeHeartbeat(
            store,
            node_id=config.node_id or default_node_id(slot.index),
            slot=slot.index,
            interval_seconds=config.node_heartbeat_seconds,
            figures=runtime.node_figures,
        )
        await runtime.node.migrate()
        await tasks.start(runtime.node.run)
        runtime.sizing = await _start_sizing(runtime, stack)
        if config.demo:
            runtime.farm = await _start_demo(runtime, stack, slot.index)
        try:
            yield runtime
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(config.shutdown_timeout_seconds / 2):
                await runtime.drain()


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
    arm_b = replace(batcher_config, data_dir=batcher_config.data_dir / ARM_B_DIR)
    return SplitBatcher(
        batcher, SSEEventBatcher(store, arm_b, rules=rules, breaker=breaker()), share_b=config.sizing.ab_split
    )


def _reading(runtime: Runtime) -> Reading:
    stats = runtime.batcher.statistics()
    return Reading(stats.messages_stored, runtime.delivery_latency.statistics(), stats.write_latency_histogram)


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


# Each process's demo numbers its jobs from slot x this, so two workers never report the same job id.
_DEMO_JOB_IDS_PER_SLOT = 1_000_000_000


async def _start_demo(runtime: Runtime, stack: AsyncExitStack, slot: int) -> DemoFarmLike:
    """Start the demo workers; imported here so the server runs without the workers package.

    Raises:
        RuntimeError: ``sse_batcher.workers.demo.farm`` cannot be imported (run with ``--no-demo``).
    """
    try:
        from sse_batcher.workers.demo.farm import DemoFarm
        from sse_batcher.workers.job import JobIdAllocator
    except ImportError as exc:
        raise RuntimeError(f"the demo workers are unavailable ({exc}); start with --no-demo") from exc
    rate = runtime.config.demo_rate
    job_ids = JobIdAllocator(start=1 + slot * _DEMO_JOB_IDS_PER_SLOT)
    farm: DemoFarmLike = await stack.enter_async_context(DemoFarm(runtime.batcher, rate=rate, job_ids=job_ids))
    logger.info("demo on: a simulated render farm, about %g jobs a second, some failing on purpose", rate)
    return farm
