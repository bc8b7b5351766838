"""The server's configuration: one frozen dataclass, defaults from ``constants.py``.

``ServerConfig()`` takes the values ``constants`` read when it was imported; ``ServerConfig.from_env()``
reads the environment again, so a variable set after import (a test, a CLI flag) is honoured.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import constants
from batcher import BatcherConfig, ConfigError, SizingConfig, StoreConfig
from batcher.config import require_positive

__all__ = ["LOG_LEVELS", "MAX_WORKERS", "ServerConfig", "StoreSettings", "mask_dsn"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Server processes on one host; also the number of dead-letter slots one data directory offers.
MAX_WORKERS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """Everything of :class:`batcher.StoreConfig` but the dsn, which is known only once PostgreSQL runs.

    Raises:
        ConfigError: a value is out of range (checked when :meth:`store_config` builds the config).
    """

    pool_size: int = constants.SSE_DB_POOL_SIZE
    timeout_seconds: float = constants.SSE_STORE_TIMEOUT_SECONDS
    replay_page_size: int = constants.SSE_REPLAY_PAGE_SIZE
    retention_seconds: float = constants.SSE_RETENTION_SECONDS
    retention_interval_seconds: float = constants.SSE_RETENTION_INTERVAL_SECONDS

    def store_config(self, dsn: str) -> StoreConfig:
        """Return the store configuration for ``dsn``.

        Raises:
            ConfigError: a value is out of range.
        """
        return StoreConfig(
            dsn=dsn,
            pool_size=self.pool_size,
            timeout_seconds=self.timeout_seconds,
            replay_page_size=self.replay_page_size,
            retention_seconds=self.retention_seconds,
            retention_interval_seconds=self.retention_interval_seconds,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the HTTP server runs: listen address, database, limits, tokens and the batcher inside.

    ``database_url=None`` starts the embedded PostgreSQL under ``data_dir``. Tokens set to ``None``
    leave the endpoint open.

    Raises:
        ConfigError: a value is out of range.
    """

    host: str = constants.SSE_HOST
    port: int = constants.SSE_PORT
    database_url: str | None = constants.DATABASE_URL
    data_dir: Path = field(default_factory=lambda: Path(constants.SSE_DATA_DIR))
    demo: bool = True
    demo_rate: float = constants.SSE_DEMO_RATE
    log_level: str = "info"
    ping_seconds: float = constants.SSE_PING_SECONDS
    retry_milliseconds: int = constants.SSE_RETRY_MILLISECONDS
    client_queue_size: int = constants.SSE_CLIENT_QUEUE_SIZE
    client_send_timeout_seconds: float = constants.SSE_CLIENT_SEND_TIMEOUT_SECONDS
    max_clients: int = constants.SSE_MAX_CLIENTS
    max_request_bytes: int = constants.SSE_MAX_REQUEST_BYTES
    max_request_events: int = constants.SSE_MAX_REQUEST_EVENTS
    subscribe_token: str | None = constants.SSE_SUBSCRIBE_TOKEN
    publish_token: str | None = constants.SSE_PUBLISH_TOKEN
    shutdown_timeout_seconds: float = constants.SSE_SHUTDOWN_TIMEOUT_SECONDS
    rules_file: Path | None = None
    breaker_failures: int = constants.SSE_BREAKER_FAILURES
    breaker_reset_seconds: float = constants.SSE_BREAKER_RESET_SECONDS
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    store: StoreSettings = field(default_factory=StoreSettings)
    # -- nodes (issue 9) ---------------------------------------------------------------------
    # None: the host name and this process's slot (server.nodes.default_node_id).
    node_id: str | None = constants.SSE_NODE_ID
    node_heartbeat_seconds: float = constants.SSE_NODE_HEARTBEAT_SECONDS
    workers: int = constants.SSE_WORKERS
    # The slot under data_dir this process tries first (the supervisor gives worker i slot i).
    slot: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port!r}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.database_url is not None and not self.database_url.startswith(("postgres://", "postgresql://")):
            raise ConfigError("database_url must be a postgresql:// URL")
        require_positive("demo_rate", self.demo_rate)
        require_positive("ping_seconds", self.ping_seconds)
        require_positive("retry_milliseconds", self.retry_milliseconds)
        require_positive("client_queue_size", self.client_queue_size)
        require_positive("client_send_timeout_seconds", self.client_send_timeout_seconds)
        require_positive("max_clients", self.max_clients)
        require_positive("max_request_bytes", self.max_request_bytes)
        require_positive("max_request_events", self.max_request_events)
        require_positive("shutdown_timeout_seconds", self.shutdown_timeout_seconds)
        require_positive("breaker_failures", self.breaker_failures)
        require_positive("breaker_reset_seconds", self.breaker_reset_seconds)
        # -- nodes (issue 9)
        require_positive("node_heartbeat_seconds", self.node_heartbeat_seconds)
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be 1-{MAX_WORKERS}, got {self.workers!r}")
        if not 0 <= self.slot < MAX_WORKERS:
            raise ConfigError(f"slot must be 0-{MAX_WORKERS - 1}, got {self.slot!r}")
        if self.node_id is not None and not 1 <= len(self.node_id) <= 200:
            raise ConfigError("node_id must be None (host name and slot) or 1-200 characters")
        for name in ("subscribe_token", "publish_token"):
            if getattr(self, name) == "":
                raise ConfigError(f"{name} must be None (open) or a non-empty string")

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerConfig:
        """Build a config from the environment as it is now; ``overrides`` win over it.

        Raises:
            ValueError: a variable does not parse (named in the message).
            ConfigError: a value is out of range.
        """
        data_dir = Path(constants.env_str("SSE_DATA_DIR", constants.SSE_DATA_DIR) or constants.SSE_DATA_DIR)
        batcher = BatcherConfig(
            batch_size=constants.env_int("SSE_BATCH_SIZE", constants.SSE_BATCH_SIZE),
            batch_timeout_seconds=constants.env_float("SSE_BATCH_TIMEOUT_SECONDS", constants.SSE_BATCH_TIMEOUT_SECONDS),
            max_retries=constants.env_int("SSE_BATCH_MAX_RETRIES", constants.SSE_BATCH_MAX_RETRIES),
            retry_delay_seconds=constants.env_float("SSE_BATCH_RETRY_DELAY", constants.SSE_BATCH_RETRY_DELAY),
            batching_enabled=constants.env_bool("SSE_BATCHING_ENABLED", constants.SSE_BATCHING_ENABLED),
            max_buffered_events=constants.env_int("SSE_MAX_BUFFERED_EVENTS", constants.SSE_MAX_BUFFERED_EVENTS),
            max_event_bytes=constants.env_int("SSE_MAX_EVENT_BYTES", constants.SSE_MAX_EVENT_BYTES),
            shutdown_timeout_seconds=constants.env_float(
                "SSE_SHUTDOWN_TIMEOUT_SECONDS", constants.SSE_SHUTDOWN_TIMEOUT_SECONDS
            ),
            subscriber_queue_size=constants.env_int("SSE_SUBSCRIBER_QUEUE_SIZE", constants.SSE_SUBSCRIBER_QUEUE_SIZE),
            data_dir=data_dir,
        )
        store = StoreSettings(
            pool_size=constants.env_int("SSE_DB_POOL_SIZE", constants.SSE_DB_POOL_SIZE),
            timeout_seconds=constants.env_float("SSE_STORE_TIMEOUT_SECONDS", constants.SSE_STORE_TIMEOUT_SECONDS),
            replay_page_size=constants.env_int("SSE_REPLAY_PAGE_SIZE", constants.SSE_REPLAY_PAGE_SIZE),
            retention_seconds=constants.env_float("SSE_RETENTION_SECONDS", constants.SSE_RETENTION_SECONDS),
            retention_interval_seconds=constants.env_float(
                "SSE_RETENTION_INTERVAL_SECONDS", constants.SSE_RETENTION_INTERVAL_SECONDS
            ),
        )
        config = cls(
            host=constants.env_str("SSE_HOST", constants.SSE_HOST) or constants.SSE_HOST,
            port=constants.env_int("SSE_PORT", constants.SSE_PORT),
            database_url=constants.env_str("DATABASE_URL", None),
            data_dir=data_dir,
            demo_rate=constants.env_float("SSE_DEMO_RATE", constants.SSE_DEMO_RATE),
            ping_seconds=constants.env_float("SSE_PING_SECONDS", constants.SSE_PING_SECONDS),
            retry_milliseconds=constants.env_int("SSE_RETRY_MILLISECONDS", constants.SSE_RETRY_MILLISECONDS),
            client_queue_size=constants.env_int("SSE_CLIENT_QUEUE_SIZE", constants.SSE_CLIENT_QUEUE_SIZE),
            client_send_timeout_seconds=constants.env_float(
                "SSE_CLIENT_SEND_TIMEOUT_SECONDS", constants.SSE_CLIENT_SEND_TIMEOUT_SECONDS
            ),
            max_clients=constants.env_int("SSE_MAX_CLIENTS", constants.SSE_MAX_CLIENTS),
            max_request_bytes=constants.env_int("SSE_MAX_REQUEST_BYTES", constants.SSE_MAX_REQUEST_BYTES),
            max_request_events=constants.env_int("SSE_MAX_REQUEST_EVENTS", constants.SSE_MAX_REQUEST_EVENTS),
            subscribe_token=constants.env_str("SSE_SUBSCRIBE_TOKEN", None),
            publish_token=constants.env_str("SSE_PUBLISH_TOKEN", None),
            shutdown_timeout_seconds=constants.env_float(
                "SSE_SHUTDOWN_TIMEOUT_SECONDS", constants.SSE_SHUTDOWN_TIMEOUT_SECONDS
            ),
            rules_file=_optional_path(constants.env_str("SSE_RULES_FILE", None)),
            breaker_failures=constants.env_int("SSE_BREAKER_FAILURES", constants.SSE_BREAKER_FAILURES),
            breaker_reset_seconds=constants.env_float("SSE_BREAKER_RESET_SECONDS", constants.SSE_BREAKER_RESET_SECONDS),
            batcher=batcher,
            sizing=_sizing_from_env(),
            store=store,
            # -- nodes (issue 9)
            node_id=constants.env_str("SSE_NODE_ID", None),
            node_heartbeat_seconds=constants.env_float(
                "SSE_NODE_HEARTBEAT_SECONDS", constants.SSE_NODE_HEARTBEAT_SECONDS
            ),
            workers=constants.env_int("SSE_WORKERS", constants.SSE_WORKERS),
        )
        return replace(config, **overrides) if overrides else config

    def describe_database(self) -> str:
        """Say which database is in use, with any password masked (for the startup line)."""
        if self.database_url is None:
            return f"embedded PostgreSQL at {self.data_dir / 'pgdata'}"
        return mask_dsn(self.database_url)


def _optional_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _sizing_from_env() -> SizingConfig:
    env_float, c = constants.env_float, constants
    return SizingConfig(
        enabled=constants.env_bool("SSE_DYNAMIC_BATCHING", c.SSE_DYNAMIC_BATCHING),
        min_size=constants.env_int("SSE_BATCH_SIZE_MIN", c.SSE_BATCH_SIZE_MIN),
        max_size=constants.env_int("SSE_BATCH_SIZE_MAX", c.SSE_BATCH_SIZE_MAX),
        low_load_percent=env_float("SSE_LOAD_LOW_PERCENT", c.SSE_LOAD_LOW_PERCENT),
        high_load_percent=env_float("SSE_LOAD_HIGH_PERCENT", c.SSE_LOAD_HIGH_PERCENT),
        high_loop_lag_seconds=env_float("SSE_LOAD_LOOP_LAG_HIGH_SECONDS", c.SSE_LOAD_LOOP_LAG_HIGH_SECONDS),
        sample_seconds=env_float("SSE_LOAD_SAMPLE_SECONDS", c.SSE_LOAD_SAMPLE_SECONDS),
        cooldown_seconds=env_float("SSE_BATCH_ADJUST_COOLDOWN_SECONDS", c.SSE_BATCH_ADJUST_COOLDOWN_SECONDS),
        min_timeout_seconds=env_float("SSE_BATCH_TIMEOUT_MIN_SECONDS", c.SSE_BATCH_TIMEOUT_MIN_SECONDS),
        latency_target_seconds=env_float("SSE_BATCH_LATENCY_TARGET_SECONDS", c.SSE_BATCH_LATENCY_TARGET_SECONDS),
    )


def mask_dsn(dsn: str) -> str:
    """Return ``dsn`` with its password replaced by ``***``; anything unparsable is hidden whole."""
    try:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable database URL>"
