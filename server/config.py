"""The server's configuration: one frozen dataclass, defaults from ``constants.py``.

``ServerConfig()`` takes each default from ``constants`` as it is built (a constant is read from the
environment on use); ``ServerConfig.from_env()`` reads every setting at once, from the environment
or a mapping, and raises one error naming the first bad variable.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sse_batcher import constants
from sse_batcher.batcher import BatcherConfig, ConfigError, StoreConfig
from sse_batcher.batcher.config import require_positive
from sse_batcher.batcher.sizing import SizingConfig

__all__ = ["LOG_LEVELS", "MAX_WORKERS", "ServerConfig", "StoreSettings", "mask_dsn"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# Server processes on one host; also the number of dead-letter slots one data directory offers.
MAX_WORKERS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """Everything of :class:`sse_batcher.batcher.StoreConfig` but the dsn, which is known only once PostgreSQL runs.

    Raises:
        ConfigError: a value is out of range (checked when :meth:`store_config` builds the config).
    """

    pool_size: int = field(default_factory=lambda: constants.SSE_DB_POOL_SIZE)
    timeout_seconds: float = field(default_factory=lambda: constants.SSE_STORE_TIMEOUT_SECONDS)
    replay_page_size: int = field(default_factory=lambda: constants.SSE_REPLAY_PAGE_SIZE)
    retention_seconds: float = field(default_factory=lambda: constants.SSE_RETENTION_SECONDS)
    retention_interval_seconds: float = field(default_factory=lambda: constants.SSE_RETENTION_INTERVAL_SECONDS)
    replay_page_bytes: int = field(default_factory=lambda: constants.SSE_REPLAY_PAGE_BYTES)
    state_max_keys: int = field(default_factory=lambda: constants.SSE_STATE_MAX_KEYS)

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
            replay_page_bytes=self.replay_page_bytes,
            retention_seconds=self.retention_seconds,
            retention_interval_seconds=self.retention_interval_seconds,
            state_max_keys=self.state_max_keys,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the HTTP server runs: listen address, database, limits, tokens and the batcher inside.

    ``database_url=None`` starts the embedded PostgreSQL under ``data_dir``. Tokens set to ``None``
    leave the endpoint open.

    Raises:
        ConfigError: a value is out of range.
    """

    host: str = field(default_factory=lambda: constants.SSE_HOST)
    port: int = field(default_factory=lambda: constants.SSE_PORT)
    database_url: str | None = field(default_factory=lambda: constants.DATABASE_URL)
    data_dir: Path = field(default_factory=lambda: Path(constants.SSE_DATA_DIR))
    # The simulated render farm: off unless asked for (serve turns it on for the embedded database).
    demo: bool = False
    demo_rate: float = field(default_factory=lambda: constants.SSE_DEMO_RATE)
    log_level: str = "info"
    ping_seconds: float = field(default_factory=lambda: constants.SSE_PING_SECONDS)
    retry_milliseconds: int = field(default_factory=lambda: constants.SSE_RETRY_MILLISECONDS)
    fanout_interval_seconds: float = field(default_factory=lambda: constants.SSE_FANOUT_INTERVAL_SECONDS)
    fanout_interval_max_seconds: float = field(default_factory=lambda: constants.SSE_FANOUT_INTERVAL_MAX_SECONDS)
    client_queue_size: int = field(default_factory=lambda: constants.SSE_CLIENT_QUEUE_SIZE)
    client_send_timeout_seconds: float = field(default_factory=lambda: constants.SSE_CLIENT_SEND_TIMEOUT_SECONDS)
    max_clients: int = field(default_factory=lambda: constants.SSE_MAX_CLIENTS)
    max_request_bytes: int = field(default_factory=lambda: constants.SSE_MAX_REQUEST_BYTES)
    max_request_events: int = field(default_factory=lambda: constants.SSE_MAX_REQUEST_EVENTS)
    publish_wait_timeout_seconds: float = field(default_factory=lambda: constants.SSE_PUBLISH_WAIT_TIMEOUT_SECONDS)
    subscribe_token: str | None = field(default_factory=lambda: constants.SSE_SUBSCRIBE_TOKEN)
    publish_token: str | None = field(default_factory=lambda: constants.SSE_PUBLISH_TOKEN)
    shutdown_timeout_seconds: float = field(default_factory=lambda: constants.SSE_SHUTDOWN_TIMEOUT_SECONDS)
    rules_file: Path | None = field(default_factory=lambda: constants.SSE_RULES_FILE)
    breaker_failures: int = field(default_factory=lambda: constants.SSE_BREAKER_FAILURES)
    breaker_reset_seconds: float = field(default_factory=lambda: constants.SSE_BREAKER_RESET_SECONDS)
    follow_poll_seconds: float = field(default_factory=lambda: constants.SSE_FOLLOW_POLL_SECONDS)
    header_timeout_seconds: float = field(default_factory=lambda: constants.SSE_HEADER_TIMEOUT_SECONDS)
    body_timeout_seconds: float = field(default_factory=lambda: constants.SSE_BODY_TIMEOUT_SECONDS)
    max_header_bytes: int = field(default_factory=lambda: constants.SSE_MAX_HEADER_BYTES)
    replay_budget_bytes: int = field(default_factory=lambda: constants.SSE_REPLAY_BUDGET_BYTES)
    db_wait_seconds: float = field(default_factory=lambda: constants.SSE_DB_WAIT_SECONDS)
    # Security (see server.security and docs/security.md).
    publish_tokens_file: Path | None = field(default_factory=lambda: constants.SSE_PUBLISH_TOKENS_FILE)
    subscribe_tokens_file: Path | None = field(default_factory=lambda: constants.SSE_SUBSCRIBE_TOKENS_FILE)
    cors_origins: tuple[str, ...] = field(default_factory=lambda: constants.SSE_CORS_ORIGINS)
    allowed_hosts: tuple[str, ...] = field(default_factory=lambda: constants.SSE_ALLOWED_HOSTS)
    publish_rate_limit: float = field(default_factory=lambda: constants.SSE_PUBLISH_RATE_LIMIT)
    publish_rate_burst: int | None = field(default_factory=lambda: constants.SSE_PUBLISH_RATE_BURST)
    stream_token_secret: str | None = field(default_factory=lambda: constants.SSE_STREAM_TOKEN_SECRET)
    stream_token_max_seconds: float = field(default_factory=lambda: constants.SSE_STREAM_TOKEN_MAX_SECONDS)
    max_clients_per_ip: int | None = field(default_factory=lambda: constants.SSE_MAX_CLIENTS_PER_IP)
    max_stream_seconds: float | None = field(default_factory=lambda: constants.SSE_MAX_STREAM_SECONDS)
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    store: StoreSettings = field(default_factory=StoreSettings)
    # -- nodes -------------------------------------------------------------------------------
    # None: the host name and this process's slot (server.nodes.default_node_id).
    node_id: str | None = field(default_factory=lambda: constants.SSE_NODE_ID)
    node_heartbeat_seconds: float = field(default_factory=lambda: constants.SSE_NODE_HEARTBEAT_SECONDS)
    workers: int = field(default_factory=lambda: constants.SSE_WORKERS)
    # The slot under data_dir this process tries first (the supervisor gives worker i slot i).
    slot: int = 0
    # -- digests -----------------------------------------------------------------------------
    digest_interval_seconds: float = field(default_factory=lambda: constants.SSE_DIGEST_INTERVAL_SECONDS)
    digest_grace_seconds: float = field(default_factory=lambda: constants.SSE_DIGEST_GRACE_SECONDS)

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
        if not 0 <= self.fanout_interval_seconds <= 5:
            raise ConfigError(f"fanout_interval_seconds must be 0-5, got {self.fanout_interval_seconds!r}")
        if not 0 <= self.fanout_interval_max_seconds <= 5:
            raise ConfigError(f"fanout_interval_max_seconds must be 0-5, got {self.fanout_interval_max_seconds!r}")
        require_positive("client_send_timeout_seconds", self.client_send_timeout_seconds)
        require_positive("header_timeout_seconds", self.header_timeout_seconds)
        require_positive("replay_budget_bytes", self.replay_budget_bytes)
        require_positive("body_timeout_seconds", self.body_timeout_seconds)
        if self.max_header_bytes < 1024:
            raise ConfigError(f"max_header_bytes must be >= 1024, got {self.max_header_bytes!r}")
        require_positive("max_clients", self.max_clients)
        require_positive("max_request_bytes", self.max_request_bytes)
        require_positive("max_request_events", self.max_request_events)
        require_positive("publish_wait_timeout_seconds", self.publish_wait_timeout_seconds)
        require_positive("shutdown_timeout_seconds", self.shutdown_timeout_seconds)
        if not self.db_wait_seconds >= 0:
            raise ConfigError(f"db_wait_seconds must be >= 0, got {self.db_wait_seconds!r}")
        require_positive("breaker_failures", self.breaker_failures)
        require_positive("breaker_reset_seconds", self.breaker_reset_seconds)
        require_positive("follow_poll_seconds", self.follow_poll_seconds)
        # -- nodes
        require_positive("node_heartbeat_seconds", self.node_heartbeat_seconds)
        # -- digests
        require_positive("digest_interval_seconds", self.digest_interval_seconds)
        if not self.digest_grace_seconds >= 0:
            raise ConfigError(f"digest_grace_seconds must be >= 0, got {self.digest_grace_seconds!r}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be 1-{MAX_WORKERS}, got {self.workers!r}")
        if not 0 <= self.slot < MAX_WORKERS:
            raise ConfigError(f"slot must be 0-{MAX_WORKERS - 1}, got {self.slot!r}")
        if self.node_id is not None and not 1 <= len(self.node_id) <= 200:
            raise ConfigError("node_id must be None (host name and slot) or 1-200 characters")
        for name in ("subscribe_token", "publish_token"):
            if getattr(self, name) == "":
                raise ConfigError(f"{name} must be None (open) or a non-empty string")
        self._check_security()

    def _check_security(self) -> None:
        # Origins are compared as exact strings with the browser's Origin header, so normalise
        # them the way browsers send them (lower case, no trailing slash).
        object.__setattr__(self, "cors_origins", tuple(_origin(o) for o in self.cors_origins))
        try:
            object.__setattr__(self, "allowed_hosts", tuple(_allowed_host(h) for h in self.allowed_hosts))
        except ValueError as exc:
            raise ConfigError(f"allowed_hosts: {exc}") from None
        if not self.publish_rate_limit >= 0 or self.publish_rate_limit == float("inf"):
            raise ConfigError(f"publish_rate_limit must be >= 0 (0: no limit), got {self.publish_rate_limit!r}")
        if self.publish_rate_burst is not None:
            require_positive("publish_rate_burst", self.publish_rate_burst)
        if self.stream_token_secret is not None and len(self.stream_token_secret) < 16:
            raise ConfigError("stream_token_secret must be at least 16 characters (or None: random per process)")
        require_positive("stream_token_max_seconds", self.stream_token_max_seconds)
        if self.max_clients_per_ip is not None:
            require_positive("max_clients_per_ip", self.max_clients_per_ip)
        if self.max_stream_seconds is not None:
            require_positive("max_stream_seconds", self.max_stream_seconds)

    @property
    def publish_burst(self) -> int:
        """The publish bucket's size: ``publish_rate_burst``, or twice the rate (at least 1)."""
        if self.publish_rate_burst is not None:
            return self.publish_rate_burst
        return max(1, math.ceil(2 * self.publish_rate_limit))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides: Any) -> ServerConfig:
        """Build a config from the environment as it is now (or ``environ``); ``overrides`` win over it.

        Every value comes from ``constants.SETTINGS``: each setting names the fields it fills.

        Raises:
            ValueError: a variable does not parse or is out of bounds (named in the message).
            ConfigError: a value is out of range.
        """
        values = constants.from_environ(environ)
        groups: dict[str, dict[str, Any]] = {"": {}, "batcher": {}, "sizing": {}, "store": {}}
        for setting in constants.SETTINGS:
            for path in setting.fields:
                group, _, name = path.rpartition(".")
                groups[group][name] = values[setting.name]
        config = cls(
            **groups[""],
            batcher=BatcherConfig(**groups["batcher"]),
            sizing=SizingConfig(**groups["sizing"]),
            store=StoreSettings(**groups["store"]),
        )
        return replace(config, **overrides) if overrides else config

    def describe_database(self) -> str:
        """Say which database is in use, with any password masked (for the startup line)."""
        if self.database_url is None:
            return f"embedded PostgreSQL at {self.data_dir / 'pgdata'}"
        return mask_dsn(self.database_url)


def _origin(value: str) -> str:
    """``value`` as a browser sends it in ``Origin`` (``scheme://host[:port]``), or ``*``.

    Raises:
        ConfigError: it is not an http(s) origin.
    """
    text = value.strip().rstrip("/").lower()
    if text == "*":
        return text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"cors_origins: {value!r} is not an origin like https://app.example.com") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise ConfigError(f"cors_origins: {value!r} is not an origin like https://app.example.com")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"cors_origins: {value!r} must not carry a user name or password")
    return text


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


_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*")


def _allowed_host(entry: str) -> str:
    """An ``allowed_hosts`` entry, lower-cased: ``*``, a host name, ``*.`` and a name, or an IP address.

    Raises:
        ValueError: anything else (a URL, a path, a port, blanks).
    """
    name = entry.strip().lower().removesuffix(".")
    bare = name.removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if name == "*" or _HOST_NAME.fullmatch(name):
        return name
    raise ValueError(f"{entry!r} is not a host name like sse.example.com, *.example.com, an IP address or *")
