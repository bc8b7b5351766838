"""A worker's lifecycle states, its configuration and its statistics snapshot."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from sse_batcher import constants
from sse_batcher.batcher import ConfigError

__all__ = ["WorkerConfig", "WorkerState", "WorkerStats"]


class WorkerState(enum.Enum):
    """Lifecycle of a worker: NEW -> RUNNING -> STOPPING -> STOPPED. A stopped worker stays stopped."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """How many jobs a worker runs at once, queues, and how long it waits for room and for stop.

    Raises:
        ConfigError: a value is out of range.
    """

    concurrency: int = 1
    queue_size: int = field(default_factory=lambda: constants.SSE_WORKER_QUEUE_SIZE)
    emit_timeout_seconds: float = field(default_factory=lambda: constants.SSE_EMIT_TIMEOUT_SECONDS)
    stop_timeout_seconds: float = field(default_factory=lambda: constants.SSE_SHUTDOWN_TIMEOUT_SECONDS)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency!r}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {self.queue_size!r}")
        if self.emit_timeout_seconds < 0:
            raise ConfigError(f"emit_timeout_seconds must be >= 0, got {self.emit_timeout_seconds!r}")
        if self.stop_timeout_seconds < 0:
            raise ConfigError(f"stop_timeout_seconds must be >= 0, got {self.stop_timeout_seconds!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStats:
    """A snapshot of one worker, as the dashboard's worker table shows it."""

    name: str
    kind: str
    use_batching: bool
    state: str
    concurrency: int
    events: int
    emit_errors: int
    jobs_queued: int
    jobs_running: int
    jobs_done: int
    jobs_failed: int
    jobs_abandoned: int
    jobs_unstarted: int

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)
