"""``sse-batcher serve --workers N``: N server processes on one listening socket and one PostgreSQL.

The parent does what must happen once, then only watches:

1. It starts the embedded PostgreSQL when DATABASE_URL is unset, and runs the migrations
   (``sse_events`` and ``sse_nodes``) before any worker starts, so the workers never race on them.
2. It binds the listening socket and hands it to every worker, as uvicorn's own multiprocess
   supervisor does: the kernel spreads connections over the processes accepting on it, and while
   a worker restarts, the others take its share (the backlog belongs to the socket, not to a process).
3. It starts the workers with multiprocessing's ``spawn`` context (a fresh interpreter: no event
   loop, pool or lock is inherited half-copied from the parent). Worker ``i`` prefers slot ``i``
   and each runs its share of the demo (``demo_rate / N``, job ids of its own). Each worker is the
   single-process server of :mod:`sse_batcher.server.serving.serve`, with its graceful drain.
4. A worker that exits unasked (a crash, ``kill -9``) is started again after a backoff that
   doubles while it keeps failing, so a crash loop cannot spin; the others keep serving. A worker
   that fails before the first start completed fails the whole command (a bad setting, not a crash).
5. Without SSE_STREAM_TOKEN_SECRET, it draws one random stream-token key and gives it to every
   worker (inside the config multiprocessing pickles down the pipe to each child; never in a file
   or the environment), so a token one worker signed opens a stream on any other.
6. The per-client limits are divided among the workers (:func:`share_limits`, in ``_worker.py``
   with the rest of what each worker gets): each worker keeps its own buckets and counters, and a
   client's connections land on any of them, so a worker allowed the whole limit would let N times
   it through.
7. SIGTERM or SIGINT: every worker is sent SIGTERM and drains (stores and delivers what it
   accepted), the parent waits for each, then stops PostgreSQL and exits 0, leaving no process.

Workers run in a process group of their own, so a terminal's Ctrl-C reaches the parent only and
each worker is stopped once, by it; each also stops itself should the parent vanish (``kill -9``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Final

import anyio

from sse_batcher.batcher import BatcherError, PostgresStore, StoreUnavailableError
from sse_batcher.server.app.starting import DatabaseWait
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.nodes.node import SCHEMA as NODES_SCHEMA
from sse_batcher.server.serving._worker import share_limits, worker_config, worker_main
from sse_batcher.server.serving.serve import configure_logging, demo_line, startup_line

__all__ = ["Supervisor", "restart_delay", "run_workers", "share_limits"]

logger = logging.getLogger(__name__)

_BACKOFF_FIRST_SECONDS: Final = 0.5
_BACKOFF_MAX_SECONDS: Final = 30.0
# A worker that ran this long before it died is not crash-looping: its backoff starts over.
_HEALTHY_AFTER_SECONDS: Final = 30.0


def restart_delay(failures: int) -> float:
    """Seconds to wait before starting a worker again after ``failures`` early deaths in a row.

    Half a second after the first, doubling up to 30 s: a worker that dies at once, over and over
    (a broken disk, a database refusing it), costs the host a start every 30 s, not a busy loop.
    """
    return min(_BACKOFF_MAX_SECONDS, _BACKOFF_FIRST_SECONDS * 2.0 ** max(0, failures - 1))


def run_workers(config: ServerConfig) -> int:
    """Run ``config.workers`` server processes until SIGTERM or SIGINT; return the exit code."""
    configure_logging(config)
    supervisor = Supervisor(config)
    return supervisor.run()


@dataclass
class _Worker:
    index: int
    process: BaseProcess | None = None
    ready: Connection | None = None
    started_at: float = 0.0  # monotonic, when it reported listening
    failures: int = 0  # consecutive early deaths
    restart_at: float | None = None  # monotonic; set while it waits out its backoff


class Supervisor:
    """The parent of ``serve --workers N``: starts, restarts and stops the workers (see the module)."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(index) for index in range(config.workers)]
        self._stopping = False
        self._wake_read, self._wake_write = socket.socketpair()

    def run(self) -> int:
        """Start everything, watch the workers until a signal, stop everything; return the exit code."""
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(self._wake_write.fileno())
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        embedded = None
        try:
            dsn = self._config.database_url
            if dsn is None:
                from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

                embedded = EmbeddedPostgres(self._config.data_dir)
                dsn = embedded.start()
            if self._stopping:
                return 0
            if not anyio.run(self._migrate_when_reachable, dsn):
                return 0 if self._stopping else 1  # the wait logged its one line
            if self._stopping:
                return 0
            # One key for every worker, drawn once: a restarted worker still accepts the tokens of the others.
            secret = self._config.stream_token_secret or secrets.token_urlsafe(32)
            with _bind(self._config.host, self._config.port) as sock:
                shared = replace(self._config, database_url=dsn, stream_token_secret=secret)
                return self._serve(share_limits(shared), sock)
        except (BatcherError, OSError, subprocess.SubprocessError) as exc:
            # PostgreSQL would not start or answer, or the port is taken: nothing was served.
            print(f"sse-batcher: {exc}", file=sys.stderr)
            return 1
        finally:
            if embedded is not None:
                embedded.release()
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._wake_read.close()
            self._wake_write.close()

    async def _migrate_when_reachable(self, dsn: str) -> bool:
        """Create the tables, waiting (as a single server does) while the database is unreachable.

        Returns False when the wait ran out (its final line is logged) or a signal came first.
        """
        waiting = DatabaseWait(self._config)
        while not self._stopping:
            try:
                await _migrate(self._config, dsn)
                return True
            except StoreUnavailableError as exc:
                pause = waiting.failed(exc)
            if pause is None:
                return False
            # A signal writes to the wake-up socket: stop waiting at once.
            with anyio.move_on_after(pause):
                await anyio.wait_readable(self._wake_read)
        return False

    def _on_signal(self, signum: int, _frame: object) -> None:
        # The wakeup fd has already woken the wait in _serve; this only says why.
        self._stopping = True

    def _serve(self, config: ServerConfig, sock: socket.socket) -> int:
        for worker in self._workers:
            self._start(worker, config, sock)
        announced = False
        try:
            while not self._stopping:
                now = time.monotonic()
                restart_times = [w.restart_at for w in self._workers if w.restart_at is not None]
                timeout = max(0.0, min(restart_times) - now) if restart_times else None
                waitables: list[object] = [self._wake_read]
                for worker in self._workers:
                    if worker.process is not None:
                        waitables.append(worker.process.sentinel)
                    if worker.ready is not None:
                        waitables.append(worker.ready)
                wait(waitables, timeout)  # type: ignore[arg-type]
                with contextlib.suppress(BlockingIOError):
                    self._wake_read.recv(4096)
                if self._stopping:
                    break
                for worker in self._workers:
                    if not self._check(worker, config, sock, announced):
                        return 1
                if not announced and all(w.started_at for w in self._workers):
                    announced = True
                    print(self._startup_line(sock), flush=True)
                    if self._config.demo:
                        print(demo_line(self._config), flush=True)
            return 0
        finally:
            self._stop_all()

    def _check(self, worker: _Worker, config: ServerConfig, sock: socket.socket, announced: bool) -> bool:
        """Take note of what ``worker`` reported, restart it when it is due; False: give up."""
        now = time.monotonic()
        if worker.ready is not None and worker.ready.poll():
            try:
                worker.ready.recv()
                worker.started_at = now
            except EOFError:
                pass  # it died before saying so; its exit is seen below
            worker.ready.close()
            worker.ready = None
        process = worker.process
        if process is not None and not process.is_alive():
            process.join()
            worker.process = None
            if worker.ready is not None:
                worker.ready.close()
                worker.ready = None
            if not announced:
                logger.error("worker %s exited with %s before it started; stopping", worker.index, process.exitcode)
                return False
            ran = now - worker.started_at if worker.started_at else 0.0
            worker.failures = 0 if ran >= _HEALTHY_AFTER_SECONDS else worker.failures + 1
            delay = restart_delay(worker.failures)
            logger.warning(
                "worker %s (pid %s) exited with %s; restarting it in %.1f s",
                worker.index,
                process.pid,
                process.exitcode,
                delay,
            )
            worker.started_at = 0.0
            worker.restart_at = now + delay
        if worker.restart_at is not None and now >= worker.restart_at:
            worker.restart_at = None
            self._start(worker, config, sock)
        return True

    def _start(self, worker: _Worker, config: ServerConfig, sock: socket.socket) -> None:
        ready_read, ready_write = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_main,
            args=(worker_config(config, worker.index), sock, ready_write, os.getpid()),
            name=f"sse-batcher-worker-{worker.index}",
        )
        process.start()
        ready_write.close()  # the child holds the other end; EOF once it exits
        worker.process = process
        worker.ready = ready_read

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for each to drain and exit; kill one that outlives its budget."""
        running = [w.process for w in self._workers if w.process is not None]
        for process in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        # Each drains on its own, in parallel, bounded by its own shutdown timeout.
        deadline = time.monotonic() + self._config.shutdown_timeout_seconds + 10.0
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.error("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        for worker in self._workers:
            if worker.ready is not None:
                worker.ready.close()
            worker.process = worker.ready = None

    def _startup_line(self, sock: socket.socket) -> str:
        port: int = sock.getsockname()[1]
        return startup_line(self._config.host, port, self._config.describe_database(), workers=self._config.workers)


async def _migrate(config: ServerConfig, dsn: str) -> None:
    """Create the tables once, before any worker starts (each worker's own run is then a no-op)."""
    async with PostgresStore(config.store.store_config(dsn)) as store:
        await store.fetch(NODES_SCHEMA)


@contextlib.contextmanager
def _bind(host: str, port: int) -> Iterator[socket.socket]:
    """Bind and listen on ``host:port`` once, for every worker (``port`` 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listening here already: a connection that arrives while no worker accepts waits in the
        # backlog instead of being refused.
        sock.listen(2048)
        sock.set_inheritable(True)
        yield sock
    finally:
        sock.close()
