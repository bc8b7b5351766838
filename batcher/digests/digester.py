"""Digester: durable digest windows in PostgreSQL, closed exactly once whatever the number of nodes.

Every node runs one. A pass (:meth:`Digester.run_pass`), every ``interval_seconds``, is one
transaction under an advisory lock that only one node holds at a time (the others skip their
pass). Inside it, the pass ingests what was stored since the cursor into windows, then closes
every window whose end is at least ``grace_seconds`` past into its ``T_DIGEST`` message (the steps
are in :mod:`._pass`). The grace lets an event emitted just before a window's end reach the store
first.

All in one transaction: a process killed at any point leaves windows, cursor and digests as they
were before the pass, and the next pass, here or on another node, redoes it. Two nodes never both
close a window (the lock), and should they ever race (two deployments on one database with
different locks), the unique idempotency key stores one digest. The digest is an ordinary message:
the log followers hand it to every node's hub, and clients resume and replay it like any other.

Nothing is held in memory between passes: the windows, their counts and the events they keep are
rows. The window clock is the wall clock (``clock``, ``time.time`` by default; tests pass their own),
because windows are aligned to it; the pass interval uses the monotonic one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import anyio
import asyncpg

from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.digests import _sql as dsql
from sse_batcher.batcher.digests._pass import DigestPass
from sse_batcher.batcher.errors import BatcherClosedError, ConfigError, StoreUnavailableError
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.log import _sql as sql
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["Digester", "DigesterStats", "OpenWindow", "PassReport"]

logger = logging.getLogger(__name__)

# Open windows listed in the statistics at most.
_LISTED_WINDOWS: Final = 200
_PRUNE_EVERY_SECONDS: Final = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenWindow:
    """A window not closed yet: its key, bounds (epoch seconds), events so far, and when it closes."""

    event_type: str
    source: str
    group: str
    window_start: float
    window_end: float
    closes_at: float
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PassReport:
    """What one pass did; ``ran`` is False when another node held the lock."""

    ran: bool
    rows: int = 0
    events: int = 0
    digests: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DigesterStats:
    """Counters since start, and the open windows as of the last pass (every node's, from the table)."""

    state: str
    passes: int
    passes_skipped: int
    errors: int
    rows_ingested: int
    events_digested: int
    digests_emitted: int
    # The smallest of the per-type cursors: every row up to it is in windows.
    cursor: int
    last_pass_at: float | None
    open_windows: tuple[OpenWindow, ...]


class Digester(Service):
    """Maintain the digest windows of ``rules`` in PostgreSQL and emit their digests, on its own connection.

    Raises:
        ConfigError: a rule in ``rules`` has no ``digest_seconds``.
    """

    def __init__(
        self,
        config: StoreConfig,
        rules: Mapping[str, TypeRule],
        *,
        interval_seconds: float = 1.0,
        grace_seconds: float = 2.0,
        keep_closed_seconds: float = 8 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, rule in rules.items():
            if rule.digest_seconds is None:
                raise ConfigError(f"the rule of {name} has no digest_seconds")
        if not interval_seconds > 0 or not grace_seconds >= 0:
            raise ConfigError("interval_seconds must be > 0 and grace_seconds >= 0")
        self._config = config
        self._rules = dict(rules)
        self._types = sorted(self._rules)
        self._interval = interval_seconds
        self._grace_ms = round(grace_seconds * 1000)
        self._keep_closed_ms = round(keep_closed_seconds * 1000)
        self._clock = clock
        self._state = State.NEW
        self._conn: asyncpg.Connection | None = None
        self._lock = anyio.Lock()
        self._next_prune = 0.0
        self._passes = 0
        self._skipped = 0
        self._errors = 0
        self._rows = 0
        self._events = 0
        self._digests = 0
        self._cursor = 0
        self._last_pass_at: float | None = None
        self._open: tuple[OpenWindow, ...] = ()

    @property
    def rules(self) -> Mapping[str, TypeRule]:
        """The digested types and their rules."""
        return self._rules

    @property
    def grace_seconds(self) -> float:
        """How long past its end a window stays open, so an event emitted just before it is counted."""
        return self._grace_ms / 1000

    async def start(self) -> None:
        """Connect and create the digest tables if they are missing.

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

    async def aclose(self) -> None:
        """Close the connection (a pass in progress rolls back). Idempotent."""
        if not self._begin_close():
            return
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def run(self) -> None:
        """Run a pass every ``interval_seconds`` until cancelled or closed; failures are logged and counted."""
        while self._state is State.RUNNING:
            try:
                await self.run_pass()
            except StoreUnavailableError as exc:
                self._errors += 1
                logger.warning("digest pass failed, will retry: %s", exc)
            except BatcherClosedError:
                break
            except Exception:
                # A bug must not end digests for good: the pass rolled back; count it, try again.
                self._errors += 1
                logger.exception("digest pass raised unexpectedly")
            await anyio.sleep(self._interval)

    async def run_pass(self) -> PassReport:
        """Ingest what was stored since the last pass and close the windows that are due.

        Raises:
            BatcherClosedError: not started, or closed.
            StoreUnavailableError: PostgreSQL failed; nothing of the pass was kept.
        """
        if self._state is not State.RUNNING:
            raise BatcherClosedError(f"the digester is {self._state.value}")
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._connect()
                conn = self._conn
                if conn is None:  # pragma: no cover - _connect sets it or raises
                    raise StoreUnavailableError("the digester is not connected")
                report = await self._pass(conn)
                self._open = await self._open_windows(conn)
            except (*sql.UNAVAILABLE, StoreUnavailableError) as exc:
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                raise StoreUnavailableError(f"digest pass failed: {exc!r}") from exc
        if report.ran:
            self._passes += 1
            self._rows += report.rows
            self._events += report.events
            self._digests += len(report.digests)
        else:
            self._skipped += 1
        self._last_pass_at = self._clock()
        return report

    # -- one pass ------------------------------------------------------------------------------
    async def _pass(self, conn: asyncpg.Connection) -> PassReport:
        async with conn.transaction():
            if not await conn.fetchval(dsql.TRY_DIGEST_LOCK, timeout=self._config.timeout_seconds):
                return PassReport(ran=False)
            steps = DigestPass(conn, self._rules, self._config)
            ingested = await steps.ingest()
            self._cursor = ingested.cursor
            now_ms = math.floor(self._clock() * 1000)
            digests = await steps.close_due(now_ms - self._grace_ms)
            if self._next_prune <= time.monotonic():
                self._next_prune = time.monotonic() + _PRUNE_EVERY_SECONDS
                await steps.prune(now_ms - self._keep_closed_ms)
        return PassReport(ran=True, rows=ingested.rows, events=ingested.events, digests=tuple(digests))

    async def _open_windows(self, conn: asyncpg.Connection) -> tuple[OpenWindow, ...]:
        rows = await conn.fetch(dsql.OPEN, _LISTED_WINDOWS, timeout=self._config.timeout_seconds)
        grace = self._grace_ms / 1000
        return tuple(
            OpenWindow(
                event_type=row[0],
                source=row[1],
                group=row[2],
                window_start=row[3] / 1000,
                window_end=row[4] / 1000,
                closes_at=row[4] / 1000 + grace,
                count=row[5],
            )
            for row in rows
        )

    # -- connection ----------------------------------------------------------------------------
    async def _connect(self) -> None:
        try:
            conn = await asyncpg.connect(
                self._config.dsn,
                timeout=self._config.timeout_seconds,
                command_timeout=self._config.timeout_seconds,
                server_settings={"application_name": "sse-batcher-digester"},
            )
        except sql.UNAVAILABLE as exc:
            raise StoreUnavailableError(f"the digester cannot connect: {exc!r}") from exc
        try:
            await sql.init_connection(conn)
            async with conn.transaction():
                await conn.execute(sql.MIGRATION_LOCK)
                await conn.execute(dsql.DIGEST_LOCK)
                await conn.execute(dsql.SCHEMA)
                for name in self._types:
                    await conn.execute(dsql.INIT_CURSOR, name)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    def statistics(self) -> DigesterStats:
        """Return a frozen snapshot."""
        return DigesterStats(
            state=self._state.value,
            passes=self._passes,
            passes_skipped=self._skipped,
            errors=self._errors,
            rows_ingested=self._rows,
            events_digested=self._events,
            digests_emitted=self._digests,
            cursor=self._cursor,
            last_pass_at=self._last_pass_at,
            open_windows=self._open,
        )
