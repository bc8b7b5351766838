"""The running parts of one app, as the endpoints read them, and their drain (the shutdown).

:func:`~sse_batcher.server.app.wiring.open_runtime` starts the parts in data-flow order and yields
a :class:`Runtime`; the app's lifespan keeps it on ``app.state.runtime`` (never in a global, so two
apps can share a process), and the endpoints find it with :func:`runtime_of`.

Shutdown has two halves, because uvicorn waits for open responses before it runs the lifespan's
shutdown, and an SSE stream never ends on its own:

1. :meth:`Runtime.drain` (asked for by :class:`sse_batcher.server.serving.serve.GracefulServer` when
   uvicorn starts shutting down; under another ASGI server only by the lifespan's exit, see
   :mod:`sse_batcher.server.asgi`): refuse new publishes and streams, flush the batcher so every
   accepted event is stored and fanned out, then close the hub, so each stream writes what it has
   queued and ends; every publish still waiting for its commit is answered (504, ``kept`` saying
   whether its events are on disk), and a moment later every other request still waiting before
   its response (on an unreachable database, say) is answered 503 (:mod:`.cutoff`). Then uvicorn's
   wait for connections is short, and cancels nothing.
2. The lifespan's exit: drain if nobody did, stop the demo workers, close the batcher (storing
   anything emitted since), the store, and the embedded PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import psutil
from anyio.abc import TaskGroup
from starlette.requests import HTTPConnection

from sse_batcher.batcher import EventBatcher, PostgresStore, State
from sse_batcher.batcher.digests import Digester
from sse_batcher.batcher.log import LogFollower
from sse_batcher.batcher.sizing import BatchSizer
from sse_batcher.server.app.history import StatsHistory
from sse_batcher.server.app.shutdown_budget import ShutdownBudget
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.nodes.node import NodeFigures, NodeHeartbeat
from sse_batcher.server.stream.hub import Hub
from sse_batcher.server.stream.latency import DeliveryLatency

__all__ = ["DemoFarmLike", "Runtime", "RuntimeNotReady", "StartingLike", "runtime_of"]

logger = logging.getLogger(__name__)

# After the drain, how long the publishes it answered get to write their 504s before every request
# still unanswered is cancelled and answered 503; well within uvicorn's grace (at least 1 s).
_ANSWER_GRACE_SECONDS = 0.25


class DemoFarmLike(Protocol):
    """What the server needs of ``sse_batcher.workers.demo.farm.DemoFarm``."""

    def burst(self, count: int) -> int: ...

    def worker_stats(self) -> list[dict[str, Any]]: ...

    async def wind_down(self) -> None: ...


class StartingLike(Protocol):
    """What :func:`runtime_of` needs of ``sse_batcher.server.app.starting.RuntimeStarter``."""

    def describe(self) -> str: ...


class RuntimeNotReady(RuntimeError):
    """The lifespan ran but the runtime is not open: the database is away, or the server is shutting down.

    The app answers it with a 503 and ``Retry-After``; the message says why.
    """


class Runtime:
    """The running parts of one app; made by ``open_runtime``, read by the endpoints."""

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
        budget: ShutdownBudget | None = None,
    ) -> None:
        self.config = config
        # Started when the drain is asked for; the closes after it take what is left (wiring.py).
        self.budget = budget if budget is not None else ShutdownBudget(config.shutdown_timeout_seconds)
        self.store = store
        self.batcher = batcher
        self.hub = hub
        self.follower = follower
        self.database = database
        self.farm: DemoFarmLike | None = None
        # The last five minutes of throughput and latency, for a dashboard just opened.
        self.history: StatsHistory | None = None
        self.sizing: BatchSizer | None = None
        # With a live A/B (SSE_BATCH_STRATEGY_B), the sizer of each arm; ``sizing`` is arm A's.
        self.arm_sizers: tuple[BatchSizer, BatchSizer] | None = None
        self.node: NodeHeartbeat | None = None
        # Event ages at first hand-off to a client; the hub records into this one.
        self.delivery_latency = delivery_latency if delivery_latency is not None else DeliveryLatency()
        self.digester: Digester | None = None
        self.started_at = time.time()
        self.task_failures = 0
        # Read by /api/stats for CPU since its last call: the first reading is meaningless, so prime it.
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self._drain_requested = anyio.Event()
        self._drained = anyio.Event()
        # The cancel scopes of HTTP requests whose response has not begun (server.app.cutoff).
        self.unanswered: set[anyio.CancelScope] = set()
        self._tasks: TaskGroup | None = None
        self._answering = False

    # -- shutdown ----------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False once a drain was asked for: publishes and new streams are refused (503)."""
        return not self._drain_requested.is_set() and self.batcher.state is State.RUNNING

    def request_drain(self) -> None:
        """Ask for :meth:`drain` without waiting for it; safe to call many times."""
        self.budget.start()
        self._drain_requested.set()

    async def drain(self) -> None:
        """Refuse new work, store and fan out every accepted event, end every stream; wait for it.

        However it ends (done, or cut short by the caller's timeout), every publish still waiting
        with ``?wait=stored`` is answered then (a 504 saying whether its events are kept), while
        uvicorn still lets responses finish; it would cancel them later, with nothing said.
        """
        self.request_drain()
        try:
            await self._drained.wait()
        finally:
            self._answer_the_rest()

    def _answer_the_rest(self) -> None:
        """Answer what still waits once the drain ends: publishes waiting for their commit now (504),
        then, a moment later, every request whose response has not begun (503, via its cancel scope)."""
        self.batcher.end_waits()
        if self._answering or self._tasks is None:
            return
        self._answering = True

        async def cut() -> None:
            await anyio.sleep(_ANSWER_GRACE_SECONDS)  # the 504s above are written first
            for scope in list(self.unanswered):
                scope.cancel()

        self._tasks.start_soon(cut)

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
            self._answer_the_rest()
            self.hub.close()
            self._drained.set()

    def start_background(self, tasks: TaskGroup) -> None:
        """Start the loops that run for the app's life in ``tasks``: retention, the hub, digests, the drain."""
        self._tasks = tasks
        tasks.start_soon(self._supervise, "retention", self.store.run_retention)
        tasks.start_soon(self._supervise, "hub", self.hub.run)
        tasks.start_soon(self._drain_when_asked)
        if self.digester is not None:
            tasks.start_soon(self._supervise, "digests", self.digester.run)

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; a failure is logged and counted, and never takes the app down."""
        try:
            await loop()
        except Exception:
            self.task_failures += 1
            logger.exception("background task %s failed", name)

    # -- node heartbeat ----------------------------------------------------------------------
    async def log_position(self) -> tuple[int | None, int | None]:
        """Return (the last id handed to the hub, the newest committed id): how far behind this node is.

        Both come from the log follower: its cursor, and the newest id it knows committed (from
        NOTIFY payloads and local commits), so a heartbeat costs no extra read.
        """
        stats = self.follower.statistics()
        return stats.last_id, stats.head_id

    async def node_figures(self) -> NodeFigures:
        """What this node's heartbeat row reports: events in, messages out, clients, log position."""
        last_id, newest_id = await self.log_position()
        hub = self.hub.statistics()
        return NodeFigures(
            events_in=self.batcher.statistics().events_emitted,
            messages_out=hub.messages_sent,
            clients=hub.clients,
            follower_last_id=last_id,
            newest_id=newest_id,
        )


def runtime_of(request: HTTPConnection) -> Runtime:
    """The runtime the app's lifespan started.

    Raises:
        RuntimeNotReady: the lifespan ran, but the runtime is not open (yet, or any more).
        RuntimeError: the lifespan never ran (a mounted app whose parent does not run it).
    """
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        starting: StartingLike | None = getattr(request.app.state, "starting", None)
        if starting is not None:
            raise RuntimeNotReady(starting.describe())
        raise RuntimeError(
            "sse-batcher's lifespan has not run; when mounting the app, give the parent "
            "lifespan=app.router.lifespan_context (see docs/guide.md)"
        )
    return runtime
