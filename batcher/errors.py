"""The errors sse-batcher raises.

Every error derives from :class:`BatcherError`, so one ``except`` catches them all; input errors
are also ``ValueError`` so code that validates generically still catches them::

    BatcherError
    ├── BatcherClosedError        emit() after aclose(), or start() twice
    ├── BufferFullError           the buffer holds SSE_MAX_BUFFERED_EVENTS (back-pressure)
    ├── StoreError                a write to PostgreSQL failed
    │   ├── StoreUnavailableError     retryable: connection, timeout, serialization
    │   └── StoreRejectedError        fatal: PostgreSQL refused the row itself
    ├── EventValidationError(ValueError)   a field broke its rule; nothing was changed
    └── ConfigError(ValueError)            a configuration value is out of range
"""

from __future__ import annotations

__all__ = [
    "BatcherClosedError",
    "BatcherError",
    "BufferFullError",
    "ConfigError",
    "EventValidationError",
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


class EventValidationError(BatcherError, ValueError):
    """An event field broke its rule. ``field`` names it; the message gives the rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConfigError(BatcherError, ValueError):
    """A configuration value is out of range; the message names it."""
