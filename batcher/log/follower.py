"""LogFollower: every node follows the committed log in PostgreSQL and hands it on in id order.

PostgreSQL is both the log and the bus. Every write transaction NOTIFYs a channel with its newest
id (``_sql.NOTIFY``: a wake-up, never the data). Each node (process) has one follower: a
dedicated asyncpg connection that LISTENs on that channel and, on a notification, on a local commit
(:meth:`LogFollower.poke`, registered as a batcher listener), or on a safety poll every
``poll_seconds`` (for notifications lost while reconnecting), reads the rows with ``id >
last_id`` in pages and hands them to its sink (the hub), in strictly increasing id order. Ids are
taken under a transaction-scoped write lock (see ``_sql.WRITE_LOCK``), so they commit in id
order and such a read never skips a row. Many processes and hosts on one PostgreSQL therefore share
one order, and every node hands on the same rows, with the same bytes (the jsonb text).

One task does all the reading, so whatever order commits and notifications arrive in, the sink
sees each id once, increasing. When the connection drops, :attr:`connected` turns False (health
checks report it), the follower reconnects with backoff and reads on from ``last_id``: no gap.

Costs: one SELECT per commit (or per burst of commits) per node, on a connection of its own.

Data flow: store -> follower -> hub. A broker (NATS JetStream, Redis Streams) could stand in this
place behind the same shape (a sink fed in id order from a cursor); PostgreSQL stays the truth.

Hop 7 of the data flow. Next hop: the sink, the hub (``server/stream/hub.py``), called with rows in id order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg

from sse_batcher.batcher._background import BackgroundTask
from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.errors import StoreUnavailableError
from sse_batcher.batcher.events import StoredMessage
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.stats import LATENCY_BUCKETS, Histogram, HistogramSnapshot

__all__ = ["FollowerStats", "LogFollower", "Sink"]

logger = logging.getLogger(__name__)

Sink = Callable[[Sequence[StoredMessage]], None]

_RECONNECT_MIN_SECONDS = 0.05
_RECONNECT_MAX_SECONDS = 2.0
_CLOSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerStats:
    """Where the follower stands: ``last_id`` handed to the sink, ``head_id`` the newest id known committed."""

    state: str
    connected: bool
    last_id: int
    head_id: int
    notifications: int
    local_commits: int
    polls: int
    reads: int
    rows: int
    reconnects: int
    # Wake-up (notification or local commit) to hand-over, in seconds.
    handover_latency: HistogramSnapshot

    @property
    def lag(self) -> int:
        """How many ids behind the newest known commit it is (0 when caught up)."""
        return max(0, self.head_id - self.last_id)


class LogFollower(Service):
    """Follow ``sse_events`` on a connection of its own and feed ``sink`` in id order.

    ``start_after`` is the id to read after (default: the newest stored at start, so a node hands
    on only what commits from then on; clients that want history resume from the store).
    """

    def __init__(
        self,
        config: StoreConfig,
        sink: Sink,
        *,
        poll_seconds: float,
        start_after: int | None = None,
    ) -> None:
        self._config = config
        self._sink = sink
        self._poll_seconds = poll_seconds
        self._state = State.NEW
        self._conn: asyncpg.Connection | None = None
        self._wake = anyio.Event()
        self._progressed = anyio.Event()
        self._woken_at: float | None = None
        self._task = BackgroundTask()
        self._last_id = start_after
        self._head_id = 0
        self._connected = False
        self._notifications = 0
        self._local_commits = 0
        self._polls = 0
        self._reads = 0
        self._rows = 0
        self._reconnects = 0
        self.sink_errors = 0
        self._latency = Histogram(LATENCY_BUCKETS)

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up (a health check reports it)."""
        return self._connected

    @property
    def last_id(self) -> int:
        """The newest id handed to the sink (or the one it started after)."""
        return self._last_id or 0

    async def start(self) -> None:
        """Connect, LISTEN, learn where the log ends, and start following.

        Raises:
            BatcherClosedError: started before.
            StoreUnavailableError: PostgreSQL cannot be reached.
        """
        self._begin_start()
        try:
            await self._connect()
        except BaseException:
            self._state = State.CLOSED
            raise
        await self._task.start(self._run)

    async def aclose(self) -> None:
        """Stop following and close the connection. Idempotent."""
        if not self._begin_close():
            return
        await self._task.aclose()
        await self._disconnect()

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until every id known committed (local commits included) has been handed on.

        Shutdown calls this after the final flush, so connected clients get those events before
        their streams close. Returns False when ``timeout`` passed first.
        """
        target = self._head_id
        with anyio.move_on_after(timeout):
            while self.last_id < target and self._state is State.RUNNING:
                progressed = self._progressed = anyio.Event()
                self._set_wake()
                await progressed.wait()
        return self.last_id >= target

    def poke(self, messages: Sequence[StoredMessage] = ()) -> None:
        """A local commit happened: read now rather than wait for its notification (a batcher listener).

        A commit arrives twice, as this poke and as its own notification; whichever comes second
        finds its id already known (``head_id``) and wakes nothing, so a commit costs one read.
        """
        self._local_commits += 1
        if messages:
            newest = messages[-1].id
            if newest <= self._head_id:
                return
            self._head_id = newest
        self._set_wake()

    # -- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = _RECONNECT_MIN_SECONDS
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._disconnect()
                    await self._connect()
                    self._reconnects += 1
                    delay = _RECONNECT_MIN_SECONDS
                await self._catch_up()
                with anyio.move_on_after(self._poll_seconds) as scope:
                    await self._wake.wait()
                if scope.cancelled_caught:
                    self._polls += 1
            except (*sql.UNAVAILABLE, StoreUnavailableError) as exc:
                if self._connected:
                    logger.warning("log follower lost its connection (%r); reconnecting", exc)
                self._connected = False
                await self._disconnect()
                await anyio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_SECONDS)

    async def _catch_up(self) -> None:
        """Hand on every row after ``last_id``, page by page, until a page comes back short."""
        conn = self._conn
        if conn is None:
            raise StoreUnavailableError("the log follower is not connected")
        self._wake = anyio.Event()
        woken_at, self._woken_at = self._woken_at, None
        page = self._config.replay_page_size
        timeout = self._config.timeout_seconds
        while True:
            rows = await conn.fetch(sql.FOLLOW, self.last_id, page, timeout=timeout)
            self._reads += 1
            if not rows:
                return
            messages = [sql.replayed_message(row) for row in rows]
            self._last_id = messages[-1].id
            self._head_id = max(self._head_id, self._last_id)
            self._rows += len(messages)
            self._progressed.set()
            try:
                self._sink(messages)
            except Exception:
                # The sink (the hub) must never stop the log: count it, log it, keep following.
                self.sink_errors += 1
                logger.exception("log follower sink failed on ids %d-%d", messages[0].id, messages[-1].id)
            if woken_at is not None:
                self._latency.observe(time.perf_counter() - woken_at)
                woken_at = None
            if len(rows) < page:
                return

    # -- connection --------------------------------------------------------------------------
    async def _connect(self) -> None:
        try:
            conn = await asyncpg.connect(
                self._config.dsn,
                timeout=self._config.timeout_seconds,
                command_timeout=self._config.timeout_seconds,
                server_settings={"application_name": "sse-batcher-follower"},
            )
        except sql.UNAVAILABLE as exc:
            raise StoreUnavailableError(f"the log follower cannot connect: {exc!r}") from exc
        try:
            await sql.init_connection(conn)
            await conn.add_listener(sql.CHANNEL, self._notified)
            conn.add_termination_listener(self._terminated)
            head = await conn.fetchval(sql.HEAD)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._head_id = max(self._head_id, int(head))
        if self._last_id is None:
            self._last_id = int(head)
        self._connected = True
        # Whatever committed while we were away is read at once, not at the next poll.
        self._set_wake()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._connected = False
        if conn is None or conn.is_closed():
            return
        try:
            # A read-only connection: ending it abruptly loses nothing, so a link that does not
            # answer (a partition) holds a shutdown for a second, not for the statement timeout.
            with anyio.move_on_after(min(self._config.timeout_seconds, _CLOSE_SECONDS)):
                await conn.close()
        except Exception:
            conn.terminate()
        if not conn.is_closed():
            conn.terminate()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._notifications += 1
        try:
            head = int(payload)
        except ValueError:
            self._set_wake()  # not ours to trust; the read that follows finds what is there
            return
        # Known already (a local poke, or a later notification): a read that covers it is done
        # or due, because every raise of head_id sets the wake-up, and ids commit in order.
        if head <= self._head_id:
            return
        self._head_id = head
        self._set_wake()

    def _terminated(self, _conn: Any) -> None:
        self._connected = False
        self._set_wake()

    def _set_wake(self) -> None:
        if self._woken_at is None:
            self._woken_at = time.perf_counter()
        self._wake.set()

    def statistics(self) -> FollowerStats:
        """Return a frozen snapshot."""
        return FollowerStats(
            state=self._state.value,
            connected=self._connected,
            last_id=self.last_id,
            head_id=max(self._head_id, self.last_id),
            notifications=self._notifications,
            local_commits=self._local_commits,
            polls=self._polls,
            reads=self._reads,
            rows=self._rows,
            reconnects=self._reconnects,
            handover_latency=self._latency.snapshot(),
        )
