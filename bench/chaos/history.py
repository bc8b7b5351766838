"""What a campaign recorded: plain, frozen records that the checker reads and nothing else writes to.

Times are ``time.time()`` seconds (the wall clock, so they compare with PostgreSQL's ``created_at``
on the same machine). Every published event carries a unique ``marker`` in its data; a retry
without an idempotency key is a new attempt with fresh markers, as a real client's would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Fault",
    "History",
    "Kill",
    "MemorySample",
    "NodeExit",
    "Publish",
    "Received",
    "StoredEvent",
    "StoredMessage",
    "Stream",
    "Stuck",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """One POST /api/events attempt: what was sent, to which node, and what came back.

    ``status`` is None when no answer came (connection refused or reset, a client timeout).
    ``markers`` are the events' markers, in request order; ``keys`` the coalescing keys (or None).
    """

    node: str
    started: float
    ended: float
    markers: tuple[str, ...]
    event_type: str
    keys: tuple[str | None, ...]
    wait: bool
    idempotency_key: str | None
    status: int | None
    body: Any = None  # the decoded JSON answer, when there was one


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One message a stream delivered: its id, ``event:``, the exact ``data:`` line, and when it came."""

    id: int
    event: str
    data: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """One GET /events connection, from its resume id (None: live only) to its end."""

    node: str
    started: float
    ended: float
    resume_id: int | None
    status: int | None
    body: str = ""  # the error body, when status is not 200
    messages: tuple[Received, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """One event unrolled from a stored message."""

    marker: str
    event_type: str
    key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    """One row of ``sse_events`` at the end of the run, in id order, with its events."""

    id: int
    created_at: float
    events: tuple[StoredEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Kill:
    """A node's processes were sent SIGKILL: what only they held in memory is fair to lose."""

    node: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeExit:
    """A node's process exited although nobody stopped it; ``log_tail`` says why."""

    node: str
    at: float
    returncode: int | None
    log_tail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stuck:
    """A node whose process lived on but stayed unhealthy after every fault was undone; it was restarted."""

    node: str
    at: float
    log_tail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One injected fault: its kind, its target, when it began and when it was undone."""

    kind: str
    node: str | None
    started: float
    ended: float
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySample:
    """Resident memory of one node's process tree (one process start is one ``run``)."""

    node: str
    run: int
    at: float
    rss_bytes: int
    processes: int = 0  # in the tree (0: not recorded); a supervisor's children come and go


@dataclass(slots=True, kw_only=True)
class History:
    """Everything one campaign recorded, plus the final contents of the store."""

    seed: int
    started: float = 0.0
    ended: float = 0.0
    publishes: list[Publish] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    stored: list[StoredMessage] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    exits: list[NodeExit] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    memory: list[MemorySample] = field(default_factory=list)
    coalesced_types: frozenset[str] = frozenset()
