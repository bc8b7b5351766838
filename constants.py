"""Every default of sse-batcher in one place.

Each constant can be overridden by an environment variable of the same name. This is the only
module (with ``server/``) that reads the environment: ``batcher/`` takes frozen config objects
built from these values, so a library user is never surprised by a stray variable.
"""

from __future__ import annotations

import os

__all__ = [
    "DATABASE_URL",
    "SSE_BATCHING_ENABLED",
    "SSE_BATCH_ADJUST_COOLDOWN_SECONDS",
    "SSE_BATCH_LATENCY_TARGET_SECONDS",
    "SSE_BATCH_MAX_RETRIES",
    "SSE_BATCH_RETRY_DELAY",
    "SSE_BATCH_SIZE",
    "SSE_BATCH_SIZE_MAX",
    "SSE_BATCH_SIZE_MIN",
    "SSE_BATCH_TIMEOUT_MIN_SECONDS",
    "SSE_BATCH_TIMEOUT_SECONDS",
    "SSE_BREAKER_FAILURES",
    "SSE_BREAKER_RESET_SECONDS",
    "SSE_CLIENT_QUEUE_SIZE",
    "SSE_CLIENT_SEND_TIMEOUT_SECONDS",
    "SSE_DATA_DIR",
    "SSE_DB_POOL_SIZE",
    "SSE_DEMO_RATE",
    "SSE_DYNAMIC_BATCHING",
    "SSE_EMIT_TIMEOUT_SECONDS",
    "SSE_HOST",
    "SSE_LOAD_HIGH_PERCENT",
    "SSE_LOAD_LOOP_LAG_HIGH_SECONDS",
    "SSE_LOAD_LOW_PERCENT",
    "SSE_LOAD_SAMPLE_SECONDS",
    "SSE_MAX_BUFFERED_EVENTS",
    "SSE_MAX_CLIENTS",
    "SSE_MAX_EVENT_BYTES",
    "SSE_MAX_REQUEST_EVENTS",
    "SSE_MAX_REQUEST_BYTES",
    "SSE_PING_SECONDS",
    "SSE_PORT",
    "SSE_PUBLISH_TOKEN",
    "SSE_REPLAY_PAGE_SIZE",
    "SSE_RETENTION_INTERVAL_SECONDS",
    "SSE_RETENTION_SECONDS",
    "SSE_RETRY_MILLISECONDS",
    "SSE_RULES_FILE",
    "SSE_SHUTDOWN_TIMEOUT_SECONDS",
    "SSE_STORE_TIMEOUT_SECONDS",
    "SSE_SUBSCRIBE_TOKEN",
    "SSE_SUBSCRIBER_QUEUE_SIZE",
    "SSE_WORKER_QUEUE_SIZE",
    "env_bool",
    "env_float",
    "env_int",
    "env_str",
]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_str(name: str, default: str | None) -> str | None:
    """Return the variable ``name``, or ``default`` when it is unset or empty."""
    value = os.environ.get(name)
    return value if value else default


def env_int(name: str, default: int) -> int:
    """Return ``name`` as an int.

    Raises:
        ValueError: the variable is set but is not an integer (named in the message).
    """
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    """Return ``name`` as a float.

    Raises:
        ValueError: the variable is set but is not a number (named in the message).
    """
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def env_bool(name: str, default: bool) -> bool:
    """Return ``name`` as a bool (true/false, 1/0, yes/no, on/off).

    Raises:
        ValueError: the variable is set to anything else.
    """
    value = os.environ.get(name)
    if not value:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


# Batching
SSE_BATCH_SIZE = env_int("SSE_BATCH_SIZE", 10)
SSE_BATCH_TIMEOUT_SECONDS = env_float("SSE_BATCH_TIMEOUT_SECONDS", 0.5)
SSE_BATCH_MAX_RETRIES = env_int("SSE_BATCH_MAX_RETRIES", 2)
SSE_BATCH_RETRY_DELAY = env_float("SSE_BATCH_RETRY_DELAY", 0.5)
SSE_BATCHING_ENABLED = env_bool("SSE_BATCHING_ENABLED", True)
SSE_MAX_BUFFERED_EVENTS = env_int("SSE_MAX_BUFFERED_EVENTS", 100_000)
SSE_MAX_EVENT_BYTES = env_int("SSE_MAX_EVENT_BYTES", 64 * 1024)
SSE_EMIT_TIMEOUT_SECONDS = env_float("SSE_EMIT_TIMEOUT_SECONDS", 5.0)
SSE_SHUTDOWN_TIMEOUT_SECONDS = env_float("SSE_SHUTDOWN_TIMEOUT_SECONDS", 10.0)
SSE_SUBSCRIBER_QUEUE_SIZE = env_int("SSE_SUBSCRIBER_QUEUE_SIZE", 10_000)

# Adaptive sizing
SSE_DYNAMIC_BATCHING = env_bool("SSE_DYNAMIC_BATCHING", True)
SSE_BATCH_SIZE_MIN = env_int("SSE_BATCH_SIZE_MIN", 5)
SSE_BATCH_SIZE_MAX = env_int("SSE_BATCH_SIZE_MAX", 500)
SSE_LOAD_LOW_PERCENT = env_float("SSE_LOAD_LOW_PERCENT", 50.0)
SSE_LOAD_HIGH_PERCENT = env_float("SSE_LOAD_HIGH_PERCENT", 80.0)
SSE_LOAD_SAMPLE_SECONDS = env_float("SSE_LOAD_SAMPLE_SECONDS", 1.0)
SSE_BATCH_ADJUST_COOLDOWN_SECONDS = env_float("SSE_BATCH_ADJUST_COOLDOWN_SECONDS", 2.0)
# The adaptive timeout's floor: how long a lone event waits when the server is idle.
SSE_BATCH_TIMEOUT_MIN_SECONDS = env_float("SSE_BATCH_TIMEOUT_MIN_SECONDS", 0.02)
# A flush's store write should take at most this long; past it the batch size backs off.
SSE_BATCH_LATENCY_TARGET_SECONDS = env_float("SSE_BATCH_LATENCY_TARGET_SECONDS", 0.1)
# Event-loop lag at or above this counts as high load, whatever psutil says.
SSE_LOAD_LOOP_LAG_HIGH_SECONDS = env_float("SSE_LOAD_LOOP_LAG_HIGH_SECONDS", 0.05)
SSE_RULES_FILE = env_str("SSE_RULES_FILE", None)
SSE_BREAKER_FAILURES = env_int("SSE_BREAKER_FAILURES", 5)
SSE_BREAKER_RESET_SECONDS = env_float("SSE_BREAKER_RESET_SECONDS", 10.0)

# Storage
DATABASE_URL = env_str("DATABASE_URL", None)
SSE_DATA_DIR = env_str("SSE_DATA_DIR", "./.sse-batcher") or "./.sse-batcher"
SSE_DB_POOL_SIZE = env_int("SSE_DB_POOL_SIZE", 4)
SSE_STORE_TIMEOUT_SECONDS = env_float("SSE_STORE_TIMEOUT_SECONDS", 5.0)
SSE_REPLAY_PAGE_SIZE = env_int("SSE_REPLAY_PAGE_SIZE", 500)
SSE_RETENTION_SECONDS = env_float("SSE_RETENTION_SECONDS", 7 * 24 * 3600.0)
SSE_RETENTION_INTERVAL_SECONDS = env_float("SSE_RETENTION_INTERVAL_SECONDS", 60.0)

# Server
SSE_HOST = env_str("SSE_HOST", "127.0.0.1") or "127.0.0.1"
SSE_PORT = env_int("SSE_PORT", 8000)
SSE_PING_SECONDS = env_float("SSE_PING_SECONDS", 15.0)
SSE_RETRY_MILLISECONDS = env_int("SSE_RETRY_MILLISECONDS", 3000)
SSE_CLIENT_QUEUE_SIZE = env_int("SSE_CLIENT_QUEUE_SIZE", 1000)
SSE_CLIENT_SEND_TIMEOUT_SECONDS = env_float("SSE_CLIENT_SEND_TIMEOUT_SECONDS", 30.0)
SSE_MAX_CLIENTS = env_int("SSE_MAX_CLIENTS", 10_000)
SSE_MAX_REQUEST_BYTES = env_int("SSE_MAX_REQUEST_BYTES", 1024 * 1024)
# Events in one POST /api/events; a longer list is refused whole (413) before any is validated.
SSE_MAX_REQUEST_EVENTS = env_int("SSE_MAX_REQUEST_EVENTS", 10_000)
SSE_SUBSCRIBE_TOKEN = env_str("SSE_SUBSCRIBE_TOKEN", None)
SSE_PUBLISH_TOKEN = env_str("SSE_PUBLISH_TOKEN", None)

# Demo
SSE_DEMO_RATE = env_float("SSE_DEMO_RATE", 20.0)

# Workers
# Jobs a worker holds waiting for a free slot; a demo burst asks for up to 10,000 at once.
SSE_WORKER_QUEUE_SIZE = env_int("SSE_WORKER_QUEUE_SIZE", 10_000)

# Nodes (issue 9): every server process is a node with a name and a heartbeat row in sse_nodes.
# Unset: the host name plus the process's slot under SSE_DATA_DIR (``myhost-0``). With
# ``serve --workers N`` a name given here gets ``-<worker index>`` appended, so each stays unique.
SSE_NODE_ID = env_str("SSE_NODE_ID", None)
SSE_NODE_HEARTBEAT_SECONDS = env_float("SSE_NODE_HEARTBEAT_SECONDS", 2.0)
# Server processes ``sse-batcher serve`` runs on one port (``--workers`` wins over it).
SSE_WORKERS = env_int("SSE_WORKERS", 1)
