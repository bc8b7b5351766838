"""The errors sse-batcher raises.

Every error derives from :class:`BatcherError`, so one ``except`` catches them all; input errors
are also ``ValueError`` so code that validates generically still catches them::

    BatcherError
    ├── BatcherClosedError        emit() after aclose(), or start() twice
    ├── BufferFullError           the buffer holds SSE_MAX_BUFFERED_EVENTS (back-pressure)
    ├── StoreError                a write to PostgreSQL failed
    │   ├── StoreUnavailableError     retryable: connection, timeout, serialization
    │   └── StoreRejectedError        fatal: PostgreSQL refused the row itself
    │       └── IdempotencyConflictError  its idempotency key is stored with other content
    ├── AckTimeoutError           emit(wait=True): not committed in time (``kept`` says if it is safe)
    ├── EventValidationError(ValueError)   a field broke its rule; nothing was changed
    └── ConfigError(ValueError)            a configuration value is out of range
"""

from __future__ import annotations

__all__ = [
    "AckTimeoutError",
    "BatcherClosedError",
    "BatcherError",
    "BufferFullError",
    "ConfigError",
    "EventValidationError",
    "IdempotencyConflictError",
    "StoreError",
    "StoreRejectedError",
    "StoreUnavailableError",
]


class BatcherError(Exception):
    """Base class of every sse-batcher error."""


class BatcherClosedError(BatcherError):
    """The batcher is not accepting events (closed, or not started yet for async waits)."""


class BufferFullError(BatcherError):
    """The buffer is full: the caller must slow down. Nothing was accepted."""


class StoreError(BatcherError):
    """A store operation failed."""


class StoreUnavailableError(StoreError):
    """The store could not be reached or timed out; the same write may succeed later."""


class StoreRejectedError(StoreError):
    """PostgreSQL refused a row; retrying the same row cannot succeed."""


class IdempotencyConflictError(StoreRejectedError):
    """An event's idempotency key is stored already, with other content; ``idem_key`` is its storage key.

    A retry carries the same content; other content under a used key is a client's mistake, so it
    is refused rather than answered with the first event's id.
    """

    def __init__(self, message: str, idem_key: str) -> None:
        super().__init__(message)
        self.idem_key = idem_key


class AckTimeoutError(BatcherError, TimeoutError):
    """Acknowledged events were not all committed in time.

    ``state`` says where the first uncommitted one is: ``"buffered"`` (in memory: lost if the process
    dies), ``"kept"`` (fsync'ed to the dead-letter file, stored once PostgreSQL answers) or
    ``"closed"`` (the batcher shut down first; whatever it held went to the dead-letter file).
    ``kept`` is True when every uncommitted event is on disk, so a retry with the same idempotency
    key is safe either way. ``ids`` are the message ids of the events that did commit (None for the others).
    """

    def __init__(self, message: str, *, state: str, kept: bool, ids: list[int | None]) -> None:
        super().__init__(message)
        self.state = state
        self.kept = kept
        self.ids = ids


class EventValidationError(BatcherError, ValueError):
    """An event field broke its rule. ``field`` names it, ``index`` the event in a list (None for one)."""

    def __init__(self, field: str, message: str, *, index: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.index = index


class ConfigError(BatcherError, ValueError):
    """A configuration value is out of range; the message names it."""
