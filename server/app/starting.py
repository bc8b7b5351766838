"""Starting the runtime: wait for an unreachable database, bounded, while the server already answers.

A node started while its database is away must not exit (under a supervisor it would crash-loop
until the database returns): :class:`RuntimeStarter` tries to open the runtime
(:func:`~sse_batcher.server.app.wiring.open_runtime`), and while PostgreSQL cannot be reached it
tries again with a backoff from 0.5 to 5 s, logging one line per attempt with the database's
host:port, the reason and the next try. Meanwhile the app's lifespan has finished, so the server
accepts connections: ``/healthz`` answers 503 naming the store, every other endpoint 503 with
``Retry-After`` (:class:`~sse_batcher.server.app.runtime.RuntimeNotReady`). The runtime opens when
the database answers, and with it the batcher, which writes back what its dead-letter file holds.

The wait is bounded by ``SSE_DB_WAIT_SECONDS``; past it the starter logs one line and records
:attr:`RuntimeStarter.failure`, which ``sse-batcher serve`` turns into exit status 1. Any other
error of the first attempt (a bad rules file, say) fails the start at once.
"""

from __future__ import annotations

import enum
import logging
import math
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Final
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
from anyio.abc import TaskStatus

from sse_batcher.batcher import StoreUnavailableError
from sse_batcher.server.app.runtime import Runtime
from sse_batcher.server.app.wiring import open_runtime
from sse_batcher.server.config import ServerConfig

__all__ = ["DatabaseWait", "Phase", "RuntimeStarter", "database_address", "unreachable_reason"]

logger = logging.getLogger(__name__)

_FIRST_DELAY_SECONDS: Final = 0.5
_MAX_DELAY_SECONDS: Final = 5.0


class Phase(enum.Enum):
    """Where a start stands."""

    STARTING = "starting"
    WAITING = "waiting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


def database_address(config: ServerConfig) -> str:
    """``host:port`` of the database ``config`` names (the embedded one: its data directory)."""
    if config.database_url is None:
        return f"embedded PostgreSQL at {config.data_dir / 'pgdata'}"
    try:
        parts = urlsplit(config.database_url)
        host = parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]
        return f"{host}:{parts.port or 5432}"
    except ValueError:
        return "<unparsable DATABASE_URL>"


def unreachable_reason(exc: BaseException) -> str:
    """Why the database could not be reached, in a few words (from the driver's or the socket's error)."""
    cause: BaseException = exc
    # A timeout is raised from the cancellation it made (asyncio.wait_for): the timeout is the reason.
    while cause.__cause__ is not None and not isinstance(cause, TimeoutError):
        cause = cause.__cause__
    text = str(cause)
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in text:
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror})"
    if isinstance(cause, TimeoutError):
        return "no answer before the timeout"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class DatabaseWait:
    """The backoff, the bound and the one-line reports of waiting for an unreachable database.

    Call :meth:`failed` after each attempt that found the database away: it logs the attempt's line
    and returns how long to pause, or logs the final line and returns None once the wait is over.
    """

    def __init__(self, config: ServerConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.address = database_address(config)
        self._limit = config.db_wait_seconds
        self._clock = clock
        self._deadline = clock() + self._limit
        self._delay = _FIRST_DELAY_SECONDS
        self.attempts = 0
        self.reason: str | None = None
        self.next_try_at: float | None = None
        self.failure: str | None = None

    def failed(self, exc: BaseException) -> float | None:
        """Note an attempt that failed with ``exc``; return the pause before the next, or None: give up."""
        self.attempts += 1
        self.reason = unreachable_reason(exc)
        left = self._deadline - self._clock()
        if left <= 0:
            self.failure = (
                f"sse-batcher: the database at {self.address} did not answer in {self._limit:g} s "
                f"({self.attempts} attempts, last: {self.reason}); check DATABASE_URL or raise SSE_DB_WAIT_SECONDS"
            )
            logger.error("%s", self.failure)
            return None
        pause = min(self._delay, left) if math.isfinite(left) else self._delay
        self._delay = min(self._delay * 2, _MAX_DELAY_SECONDS)
        self.next_try_at = self._clock() + pause
        logger.warning(
            "database at %s unreachable (%s); next try in %.1f s (waiting up to %g s)",
            self.address,
            self.reason,
            pause,
            self._limit,
        )
        return pause


class RuntimeStarter:
    """Opens the runtime, waiting for the database as long as ``config.db_wait_seconds`` allows; keeps it until
    :meth:`stop`.

    Run :meth:`run` with ``await task_group.start(starter.run)``: that returns once the runtime is
    open, or once the first attempt found the database away (the server can then answer 503s).
    ``on_runtime`` is called with the runtime when it opens and with None once it has closed.
    """

    def __init__(
        self,
        config: ServerConfig,
        on_runtime: Callable[[Runtime | None], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_runtime = on_runtime
        self._clock = clock
        self._stop = anyio.Event()
        self._phase = Phase.STARTING
        self._wait: DatabaseWait | None = None
        self._attempt: anyio.CancelScope | None = None
        self.address = database_address(config)
        self.failure: str | None = None

    @property
    def phase(self) -> Phase:
        return self._phase

    def describe(self) -> str:
        """One line on why there is no runtime yet (for /healthz and the 503s)."""
        wait = self._wait
        if self._phase is Phase.WAITING and wait is not None:
            left = max(0.0, (wait.next_try_at or 0.0) - self._clock())
            return f"waiting for the database at {self.address} ({wait.reason}); next try in {left:.1f} s"
        if self._phase is Phase.FAILED:
            return self.failure or f"the database at {self.address} did not answer"
        if self._phase is Phase.STOPPED:
            return "the server is shutting down"
        return f"starting: opening the database at {self.address}"

    def stop(self) -> None:
        """Stop waiting, or close the runtime :meth:`run` opened. Idempotent."""
        self._stop.set()
        if self._phase is Phase.WAITING and self._attempt is not None:
            self._attempt.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the runtime (waiting for the database), keep it until :meth:`stop`, then close it.

        Raises:
            Exception: whatever the first attempt raised other than the database being unreachable.
        """
        reported = False

        def report() -> None:
            nonlocal reported
            if not reported:
                reported = True
                task_status.started()

        try:
            async with AsyncExitStack() as stack:
                runtime = await self._open(stack, report)
                if runtime is None:
                    report()
                    return
                self._phase = Phase.RUNNING
                self._on_runtime(runtime)
                report()
                await self._stop.wait()
        except Exception:
            if not reported:
                self._phase = Phase.FAILED
                raise
            # The start already reported: nobody above can handle it; serve exits on ``failure``.
            self._phase = Phase.FAILED
            self.failure = "sse-batcher: the runtime failed to start (see the error above)"
            logger.exception("the runtime failed to start")
        finally:
            if self._phase is not Phase.FAILED:
                self._phase = Phase.STOPPED
            self._on_runtime(None)

    async def _probe(self) -> None:
        """Return once the database accepts a connection; :meth:`stop` cancels the wait.

        Retries connect here first, under a cancel scope of their own, because against a partitioned
        host a connect hangs for the store timeout, and a shutdown must not wait that long. (The
        runtime itself cannot open under such a scope: its task groups outlive the attempt.)

        Raises:
            StoreUnavailableError: it does not.
        """
        dsn = self._config.database_url
        if dsn is None:
            return
        with anyio.CancelScope() as self._attempt:
            try:
                conn = await asyncpg.connect(dsn, timeout=self._config.store.timeout_seconds)
            except Exception as exc:  # any refusal is a reason to wait: the bound ends it
                raise StoreUnavailableError(f"cannot connect: {exc!r}") from exc
            await conn.close(timeout=self._config.store.timeout_seconds)
        self._attempt = None

    async def _open(self, stack: AsyncExitStack, report: Callable[[], None]) -> Runtime | None:
        """Open the runtime on ``stack``, trying again while the database is unreachable; None: gave up or stopped."""
        wait = self._wait = DatabaseWait(self._config, clock=self._clock)
        while True:
            pause: float | None = None
            try:
                if wait.attempts:
                    await self._probe()
                    if self._stop.is_set():
                        return None
                return await stack.enter_async_context(open_runtime(self._config))
            except StoreUnavailableError as exc:
                pause = wait.failed(exc)
            if self._stop.is_set():
                return None
            if pause is None:
                self._phase = Phase.FAILED
                self.failure = wait.failure
                return None
            self._phase = Phase.WAITING
            report()
            with anyio.move_on_after(pause):
                await self._stop.wait()
            if self._stop.is_set():
                return None
