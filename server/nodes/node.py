"""Nodes: each server process's slot under SSE_DATA_DIR, its name, and its heartbeat row.

- **A slot per process.** Every process that runs a batcher keeps its own dead-letter file, so no
  two processes ever append to one. :meth:`NodeSlot.take` locks ``data_dir/slots/slot-<i>/slot.lock``
  with an exclusive ``flock`` held for the life of the process: the kernel drops it when the
  process dies, however it dies, so the next process to take the slot (a restarted worker, or the
  next ``serve``) finds the file the dead one left, and the batcher writes it back at start. Two
  independent ``serve`` processes on one data directory take different slots the same way.
- **A name per node.** ``SSE_NODE_ID``, by default the host name and the slot (``myhost-0``): a
  restarted worker takes its slot, and so its name and its row, back.
- **A heartbeat row per node** in ``sse_nodes``, written every ``SSE_NODE_HEARTBEAT_SECONDS`` with
  the node's counters, and read back whole after each write, so ``/api/stats`` lists every node
  without a query of its own. Times are PostgreSQL's ``now()``: hosts' clocks never have to agree.
  A node whose heartbeat is older than three intervals shows as gone; one gone for an hour is
  forgotten (deleted by whichever node beats next).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import TaskStatus

from sse_batcher.batcher import BatcherClosedError, PostgresStore, StoreError

__all__ = ["SCHEMA", "NodeFigures", "NodeHeartbeat", "NodeSlot", "default_node_id", "lag"]

logger = logging.getLogger(__name__)

# Slots one data directory offers: far more than the processes one host runs.
_MAX_SLOTS: Final = 1024
# A heartbeat this many intervals old means the node is gone.
_ALIVE_INTERVALS: Final = 3
_FORGET_AFTER_SECONDS: Final = 3600.0
# The batcher's own layout: BatcherConfig.data_dir / "deadletter" holds its files.
_DEADLETTER_DIR: Final = "deadletter"
_LEGACY_FILES: Final = ("deadletter.jsonl", "rejected.jsonl")

# One statement (a DO block is one transaction), so the advisory lock holds until the table exists:
# two processes starting at once would race on CREATE TABLE IF NOT EXISTS. The key is sse_events'
# migration key + 2, fixed so every process agrees on it.
SCHEMA: Final = """
DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(91617109344259);
    CREATE TABLE IF NOT EXISTS sse_nodes (
        node_id          text        PRIMARY KEY,
        host             text        NOT NULL,
        pid              integer     NOT NULL,
        started_at       timestamptz NOT NULL,
        heartbeat_at     timestamptz NOT NULL DEFAULT now(),
        events_in        bigint      NOT NULL DEFAULT 0,
        messages_out     bigint      NOT NULL DEFAULT 0,
        clients          integer     NOT NULL DEFAULT 0,
        follower_last_id bigint,
        newest_id        bigint
    );
END
$$
"""
_BEAT: Final = """
INSERT INTO sse_nodes AS n (node_id, host, pid, started_at, heartbeat_at, events_in, messages_out, clients,
                            follower_last_id, newest_id)
VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8, $9)
ON CONFLICT (node_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, started_at = excluded.started_at, heartbeat_at = now(),
    events_in = excluded.events_in, messages_out = excluded.messages_out, clients = excluded.clients,
    follower_last_id = excluded.follower_last_id, newest_id = excluded.newest_id
"""
# $1: seconds after which a node is gone; $2: seconds after which it is forgotten.
_LIST: Final = """
WITH forgotten AS (DELETE FROM sse_nodes WHERE heartbeat_at < now() - make_interval(secs => $2))
SELECT node_id, host, pid, extract(epoch FROM started_at)::float8 AS started_at,
       extract(epoch FROM heartbeat_at)::float8 AS heartbeat_at, events_in, messages_out, clients,
       follower_last_id, newest_id, heartbeat_at >= now() - make_interval(secs => $1) AS alive
FROM sse_nodes
WHERE heartbeat_at >= now() - make_interval(secs => $2)
ORDER BY started_at DESC, node_id
"""


def default_node_id(slot: int) -> str:
    """The name of a node nobody named: the host name and the slot, ``myhost-0``."""
    return f"{socket.gethostname()}-{slot}"


def lag(follower_last_id: int | None, newest_id: int | None) -> int | None:
    """Messages committed that the node has not handed to its hub yet; None while either is unknown."""
    if follower_last_id is None or newest_id is None:
        return None
    return max(0, newest_id - follower_last_id)


class NodeSlot:
    """One process's exclusive directory under ``data_dir/slots``; the lock lasts until :meth:`release`."""

    def __init__(self, index: int, directory: Path, fd: int) -> None:
        self.index = index
        self.directory = directory
        self._fd: int | None = fd

    @classmethod
    def take(cls, data_dir: Path, preferred: int = 0) -> NodeSlot:
        """Lock slot ``preferred``, or the next free one after it (wrapping round), and return it.

        Slot 0 adopts the dead-letter files of a data directory from before slots existed
        (``data_dir/deadletter``), so an upgrade loses nothing.

        Raises:
            OSError: every slot is taken, or the directory cannot be written.
        """
        root = data_dir / "slots"
        for index in [*range(preferred, _MAX_SLOTS), *range(preferred)]:
            directory = root / f"slot-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            fd = _lock(directory)
            if fd is None:
                continue
            # For a human looking at the directory: which process holds it.
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            slot = cls(index, directory, fd)
            if index == 0:
                slot._adopt_legacy(data_dir / _DEADLETTER_DIR)
            return slot
        raise OSError(f"all {_MAX_SLOTS} slots under {root} are taken")

    @classmethod
    def try_take(cls, data_dir: Path, index: int) -> NodeSlot | None:
        """Lock slot ``index`` if it exists and no process holds it; None otherwise. Adopts nothing.

        Raises:
            OSError: the lock file cannot be opened.
        """
        directory = data_dir / "slots" / f"slot-{index}"
        if not directory.is_dir():
            return None
        fd = _lock(directory)
        return None if fd is None else cls(index, directory, fd)

    def _adopt_legacy(self, legacy: Path) -> None:
        target = self.directory / _DEADLETTER_DIR
        for name in _LEGACY_FILES:
            old = legacy / name
            if old.exists() and not (target / name).exists():
                target.mkdir(parents=True, exist_ok=True)
                os.replace(old, target / name)
                logger.info("moved %s into slot 0 (%s)", old, target)

    def release(self) -> None:
        """Unlock the slot. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> NodeSlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFigures:
    """What a heartbeat reports: events in, messages out, open streams, and the place in the log."""

    events_in: int
    messages_out: int
    clients: int
    follower_last_id: int | None
    newest_id: int | None


class NodeHeartbeat:
    """Writes this node's row every ``interval_seconds`` and keeps the last list of every node's rows.

    Run :meth:`run` in a task group; it writes the first beat before it reports started.
    """

    def __init__(
        self,
        store: PostgresStore,
        *,
        node_id: str,
        slot: int,
        interval_seconds: float,
        figures: Callable[[], Awaitable[NodeFigures]],
    ) -> None:
        self.node_id = node_id
        self.slot = slot
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.interval_seconds = interval_seconds
        self.beats = 0
        self.errors = 0
        self.last: NodeFigures | None = None
        self._store = store
        self._figures = figures
        self._nodes: list[dict[str, Any]] = []

    async def migrate(self) -> None:
        """Create ``sse_nodes`` if it is missing (idempotent, safe from many processes at once).

        Raises:
            StoreError: PostgreSQL failed.
        """
        await self._store.fetch(SCHEMA)

    async def beat(self) -> None:
        """Write this node's row, forget long-gone nodes, and read every row back.

        Raises:
            StoreError: PostgreSQL failed (the last list stays as it was).
        """
        figures = await self._figures()
        started = datetime.fromtimestamp(self.started_at, UTC)
        await self._store.fetch(
            _BEAT,
            self.node_id,
            self.host,
            self.pid,
            started,
            figures.events_in,
            figures.messages_out,
            figures.clients,
            figures.follower_last_id,
            figures.newest_id,
        )
        self.last = figures
        rows = await self._store.fetch(_LIST, self.interval_seconds * _ALIVE_INTERVALS, _FORGET_AFTER_SECONDS)
        self._nodes = [_node_row(row) for row in rows]
        self.beats += 1

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Beat every ``interval_seconds`` until cancelled or the store closes; a failed beat is logged."""
        while True:
            try:
                await self.beat()
            except BatcherClosedError:
                break
            except StoreError as exc:
                self.errors += 1
                logger.warning("node heartbeat failed: %s", exc)
            except Exception:
                # A task boundary: a bug here must not take the node down, only its row.
                self.errors += 1
                logger.exception("node heartbeat failed")
            task_status.started()
            task_status = anyio.TASK_STATUS_IGNORED
            await anyio.sleep(self.interval_seconds)
        task_status.started()

    def nodes(self) -> list[dict[str, Any]]:
        """Every node's row as of the last beat, newest first, each with ``alive`` and ``lag``."""
        return list(self._nodes)


def _lock(directory: Path) -> int | None:
    """The open, exclusively locked ``slot.lock`` of ``directory``; None while another process holds it.

    Raises:
        OSError: the lock file cannot be opened.
    """
    fd = os.open(directory / "slot.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _node_row(row: Any) -> dict[str, Any]:
    return {
        "id": row["node_id"],
        "host": row["host"],
        "pid": row["pid"],
        "started_at": row["started_at"],
        "heartbeat_at": row["heartbeat_at"],
        "events_in": row["events_in"],
        "messages_out": row["messages_out"],
        "clients": row["clients"],
        "follower_last_id": row["follower_last_id"],
        "newest_id": row["newest_id"],
        "lag": lag(row["follower_last_id"], row["newest_id"]),
        "alive": row["alive"],
    }
