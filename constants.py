"""Every setting of sse-batcher in one table, and the defaults it yields.

:data:`SETTINGS` is the single source of truth: each :class:`Setting` has its name (the environment
variable), type, default, bounds, one-line doc and the :class:`sse_batcher.server.ServerConfig` fields it fills.
From it come the module constants below (the defaults of every config dataclass, each overridable by
an environment variable of the same name), ``ServerConfig.from_env``, ``sse-batcher serve --help``
and the table of docs/configuration.md (``python constants.py`` prints it; a test keeps them equal).

This is the only module (with ``server/``) that reads the environment: ``batcher/`` takes frozen
config objects built from these values, so a library user is never surprised by a stray variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

__all__ = [
    "DATABASE_URL",
    "SETTINGS",
    "SSE_AB_SPLIT",
    "SSE_ALLOWED_HOSTS",
    "SSE_BATCHING_ENABLED",
    "SSE_BATCH_ADJUST_COOLDOWN_SECONDS",
    "SSE_BATCH_AGE_TARGET_SECONDS",
    "SSE_BATCH_LATENCY_TARGET_SECONDS",
    "SSE_BATCH_LEADING_EDGE",
    "SSE_BATCH_MAX_RETRIES",
    "SSE_BATCH_RETRY_DELAY",
    "SSE_BATCH_SIZE",
    "SSE_BATCH_SIZE_MAX",
    "SSE_BATCH_SIZE_MIN",
    "SSE_BATCH_STRATEGY",
    "SSE_BATCH_STRATEGY_B",
    "SSE_BATCH_TIMEOUT_MIN_SECONDS",
    "SSE_BATCH_TIMEOUT_SECONDS",
    "SSE_BREAKER_FAILURES",
    "SSE_BODY_TIMEOUT_SECONDS",
    "SSE_BREAKER_RESET_SECONDS",
    "SSE_CLIENT_QUEUE_SIZE",
    "SSE_CLIENT_SEND_TIMEOUT_SECONDS",
    "SSE_CORS_ORIGINS",
    "SSE_DATA_DIR",
    "SSE_DB_POOL_SIZE",
    "SSE_DB_WAIT_SECONDS",
    "SSE_DEMO_RATE",
    "SSE_DIGEST_GRACE_SECONDS",
    "SSE_DIGEST_INTERVAL_SECONDS",
    "SSE_DYNAMIC_BATCHING",
    "SSE_EMIT_TIMEOUT_SECONDS",
    "SSE_FANOUT_INTERVAL_MAX_SECONDS",
    "SSE_FANOUT_INTERVAL_SECONDS",
    "SSE_FOLLOW_POLL_SECONDS",
    "SSE_HEADER_TIMEOUT_SECONDS",
    "SSE_HOST",
    "SSE_LOAD_HIGH_PERCENT",
    "SSE_LOAD_LOOP_LAG_HIGH_SECONDS",
    "SSE_LOAD_LOW_PERCENT",
    "SSE_LOAD_SAMPLE_SECONDS",
    "SSE_MAX_BUFFERED_BYTES",
    "SSE_MAX_BUFFERED_EVENTS",
    "SSE_MAX_CLIENTS",
    "SSE_MAX_CLIENTS_PER_IP",
    "SSE_MAX_EVENT_BYTES",
    "SSE_MAX_MESSAGE_BYTES",
    "SSE_MAX_REQUEST_BYTES",
    "SSE_MAX_REQUEST_EVENTS",
    "SSE_NODE_HEARTBEAT_SECONDS",
    "SSE_NODE_ID",
    "SSE_MAX_HEADER_BYTES",
    "SSE_MAX_STREAM_SECONDS",
    "SSE_PING_SECONDS",
    "SSE_PORT",
    "SSE_PUBLISH_RATE_BURST",
    "SSE_PUBLISH_RATE_LIMIT",
    "SSE_PUBLISH_TOKEN",
    "SSE_PUBLISH_TOKENS_FILE",
    "SSE_PUBLISH_WAIT_TIMEOUT_SECONDS",
    "SSE_REPLAY_BUDGET_BYTES",
    "SSE_REPLAY_PAGE_BYTES",
    "SSE_REPLAY_PAGE_SIZE",
    "SSE_RETENTION_INTERVAL_SECONDS",
    "SSE_RETENTION_SECONDS",
    "SSE_RETRY_MILLISECONDS",
    "SSE_RULES_FILE",
    "SSE_SHUTDOWN_TIMEOUT_SECONDS",
    "SSE_STATE_MAX_KEYS",
    "SSE_STORE_TIMEOUT_SECONDS",
    "SSE_STREAM_TOKEN_MAX_SECONDS",
    "SSE_STREAM_TOKEN_SECRET",
    "SSE_SUBSCRIBE_TOKEN",
    "SSE_SUBSCRIBE_TOKENS_FILE",
    "SSE_WORKERS",
    "SSE_WORKER_QUEUE_SIZE",
    "Setting",
    "SettingError",
    "from_environ",
    "markdown_table",
    "setting",
]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class SettingError(ValueError):
    """An environment variable does not parse or is out of its bounds; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One setting: an environment variable, its type, default, bounds and doc.

    ``fields`` are the dotted :class:`sse_batcher.server.ServerConfig` fields it fills (``batcher.batch_size``);
    none for settings only a library default reads (the workers' queue size, say). ``minimum`` and
    ``maximum`` are inclusive; ``positive`` means > 0. ``optional`` settings may be unset (None).
    ``secret`` ones are never shown with their value.
    """

    name: str
    type: type
    default: Any
    doc: str
    section: str
    fields: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    optional: bool = False
    secret: bool = False

    def parse(self, raw: str) -> Any:
        """Turn the text of the variable into a value of :attr:`type`, checked against the bounds.

        Raises:
            SettingError: it does not parse, or is out of bounds (the message names the variable).
        """
        text = raw.strip()
        kind = self.type
        value: Any
        if kind is bool:
            lowered = text.lower()
            if lowered not in _TRUE | _FALSE:
                raise SettingError(f"{self.name} must be true or false, got {raw!r}")
            value = lowered in _TRUE
        elif kind is int:
            try:
                value = int(text)
            except ValueError:
                raise SettingError(f"{self.name} must be an integer, got {raw!r}") from None
        elif kind is float:
            try:
                value = float(text)
            except ValueError:
                raise SettingError(f"{self.name} must be a number, got {raw!r}") from None
        elif kind is Path:
            value = Path(text)
        elif kind is tuple:
            # A comma-separated list; blanks around and between commas are ignored.
            value = tuple(part.strip() for part in text.split(",") if part.strip())
        else:
            value = raw
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """Check ``value`` against the bounds (None passes for optional settings; NaN never does).

        Raises:
            SettingError: out of bounds.
        """
        if value is None and self.optional:
            return
        if self.type in (int, float) and not isinstance(value, bool):
            number = float(value)
            if math.isnan(number):
                raise SettingError(f"{self.name} must be a number, got NaN")
            if self.positive and not number > 0:
                raise SettingError(f"{self.name} must be > 0, got {value!r}")
            if self.minimum is not None and number < self.minimum:
                raise SettingError(f"{self.name} must be >= {self.minimum:g}, got {value!r}")
            if self.maximum is not None and number > self.maximum:
                raise SettingError(f"{self.name} must be <= {self.maximum:g}, got {value!r}")
        if self.type is str and value == "":
            raise SettingError(f"{self.name} must not be empty")

    def value(self, environ: Mapping[str, str]) -> Any:
        """The value in ``environ``, or the default when it is unset or empty.

        Raises:
            SettingError: it is set but invalid.
        """
        raw = environ.get(self.name)
        return self.parse(raw) if raw else self.default

    @property
    def shown_default(self) -> str:
        """The default as docs/configuration.md and ``--help`` show it."""
        if self.default is None or self.default == ():
            return "unset"
        if self.type is bool:
            return "true" if self.default else "false"
        if self.type is float and float(self.default).is_integer():
            return f"{self.default:g}"
        return str(self.default)

    @property
    def bounds(self) -> str:
        """The bounds in words, empty when there are none."""
        parts = []
        if self.positive:
            parts.append("> 0")
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return ", ".join(parts)


def _s(name: str, kind: type, default: Any, section: str, doc: str, *fields: str, **options: Any) -> Setting:
    return Setting(name=name, type=kind, default=default, doc=doc, section=section, fields=fields, **options)


_B, _Z, _D, _S, _N, _W = "batching", "sizing", "storage", "server", "nodes", "demo and workers"
_X = "security"
_G = "digests"

SETTINGS: Final[tuple[Setting, ...]] = (
    # Batching
    _s("SSE_BATCH_SIZE", int, 10, _B, "events per batch (the starting size when dynamic)", "batcher.batch_size",
       minimum=1),
    _s("SSE_BATCH_TIMEOUT_SECONDS", float, 0.5, _B, "longest an event waits for its batch (the oldest event's age)",
       "batcher.batch_timeout_seconds", positive=True),
    _s("SSE_BATCH_MAX_RETRIES", int, 2, _B, "retries of a failed store write", "batcher.max_retries", minimum=0),
    _s("SSE_BATCH_RETRY_DELAY", float, 0.5, _B, "first retry backoff in seconds (doubles, with jitter)",
       "batcher.retry_delay_seconds", minimum=0),
    _s("SSE_BATCHING_ENABLED", bool, True, _B, "false: every event travels alone", "batcher.batching_enabled"),
    _s("SSE_BATCH_LEADING_EDGE", bool, True, _B,
       "a writer idle for a batch timeout takes what is queued at once; false: a batch waits for its size or timeout",
       "batcher.leading_edge"),
    _s("SSE_MAX_BUFFERED_EVENTS", int, 100_000, _B, "buffer bound (back-pressure beyond it)",
       "batcher.max_buffered_events", minimum=1),
    _s("SSE_MAX_BUFFERED_BYTES", int, 256 * 1024 * 1024, _B,
       "buffer bound in encoded `data` bytes (back-pressure beyond it)", "batcher.max_buffered_bytes", minimum=1),
    _s("SSE_MAX_EVENT_BYTES", int, 64 * 1024, _B, "largest encoded `data` of one event", "batcher.max_event_bytes",
       minimum=1),
    _s("SSE_MAX_MESSAGE_BYTES", int, 1024 * 1024, _B,
       "largest stored aggregate: bigger groups are cut (a single larger event still travels alone)",
       "batcher.max_message_bytes", minimum=1),
    _s("SSE_EMIT_TIMEOUT_SECONDS", float, 5.0, _B, "how long a worker thread waits for room in a full buffer",
       minimum=0),
    _s("SSE_SHUTDOWN_TIMEOUT_SECONDS", float, 10.0, _B, "bound on the whole shutdown: drain, flush, closing the store",
       "shutdown_timeout_seconds", "batcher.shutdown_timeout_seconds", positive=True),
    # Adaptive sizing
    _s("SSE_DYNAMIC_BATCHING", bool, True, _Z, "adaptive batch size and timeout", "sizing.enabled"),
    # Named sizing strategies; the choices are checked by SizingConfig.
    _s("SSE_BATCH_STRATEGY", str, "adaptive", _Z,
       "sizing strategy: fixed, conservative, balanced, aggressive, adaptive or learned", "sizing.strategy"),
    _s("SSE_BATCH_AGE_TARGET_SECONDS", float, 0.25, _Z, "event age at commit the `learned` strategy keeps under",
       "sizing.age_target_seconds", positive=True),
    _s("SSE_BATCH_STRATEGY_B", str, None, _Z, "live A/B: the strategy of the second arm (unset: no A/B)",
       "sizing.strategy_b", optional=True),
    _s("SSE_AB_SPLIT", float, 0.5, _Z, "live A/B: the share of sources routed to the second arm",
       "sizing.ab_split", minimum=0, maximum=1),
    _s("SSE_BATCH_SIZE_MIN", int, 5, _Z, "smallest adaptive batch size", "sizing.min_size", minimum=1),
    _s("SSE_BATCH_SIZE_MAX", int, 500, _Z, "largest adaptive batch size; a backlog leaves in batches this large",
       "sizing.max_size", "batcher.max_batch_size", minimum=1),
    _s("SSE_BATCH_TIMEOUT_MIN_SECONDS", float, 0.02, _Z, "shortest adaptive timeout (idle server)",
       "sizing.min_timeout_seconds", positive=True),
    _s("SSE_BATCH_LATENCY_TARGET_SECONDS", float, 0.1, _Z, "store write latency the sizing strategies aim under",
       "sizing.latency_target_seconds", positive=True),
    _s("SSE_LOAD_LOOP_LAG_HIGH_SECONDS", float, 0.05, _Z, "event-loop lag counted as high load",
       "sizing.high_loop_lag_seconds", positive=True),
    _s("SSE_LOAD_LOW_PERCENT", float, 50.0, _Z, "CPU percent under which the server counts as idle",
       "sizing.low_load_percent", minimum=0, maximum=100),
    _s("SSE_LOAD_HIGH_PERCENT", float, 80.0, _Z, "CPU percent at which the server counts as busy",
       "sizing.high_load_percent", minimum=0, maximum=100),
    _s("SSE_LOAD_SAMPLE_SECONDS", float, 1.0, _Z, "load sampling interval", "sizing.sample_seconds", positive=True),
    _s("SSE_BATCH_ADJUST_COOLDOWN_SECONDS", float, 2.0, _Z, "least time between two sizing changes",
       "sizing.cooldown_seconds", minimum=0),
    _s("SSE_BREAKER_FAILURES", int, 5, _Z, "failed writes in a row that open the store circuit breaker",
       "breaker_failures", minimum=1),
    _s("SSE_BREAKER_RESET_SECONDS", float, 10.0, _Z, "how often an open breaker probes the store",
       "breaker_reset_seconds", positive=True),
    _s("SSE_RULES_FILE", Path, None, _Z, "TOML file of per-type aggregation rules", "rules_file", optional=True),
    # Storage
    _s("DATABASE_URL", str, None, _D, "PostgreSQL URL; unset starts the embedded PostgreSQL under SSE_DATA_DIR",
       "database_url", optional=True, secret=True),
    _s("SSE_DATA_DIR", Path, Path("./.sse-batcher"), _D,
       "embedded PostgreSQL data; dead-letter and quarantine files, one slot per process (`slots/slot-<i>/`)",
       "data_dir", "batcher.data_dir"),
    _s("SSE_DB_POOL_SIZE", int, 4, _D, "asyncpg pool size", "store.pool_size", minimum=1),
    _s("SSE_DB_WAIT_SECONDS", float, 60.0, _D,
       "how long a starting server waits for an unreachable database (answering 503) before it exits 1",
       "db_wait_seconds", minimum=0),
    _s("SSE_STORE_TIMEOUT_SECONDS", float, 5.0, _D, "per-operation PostgreSQL timeout", "store.timeout_seconds",
       positive=True),
    _s("SSE_REPLAY_PAGE_SIZE", int, 500, _D, "rows per page when replaying or following the log",
       "store.replay_page_size", minimum=1),
    _s("SSE_REPLAY_PAGE_BYTES", int, 1024 * 1024, _D,
       "payload bytes per replay page (a page ends after the row that crosses it)", "store.replay_page_bytes",
       minimum=1),
    _s("SSE_REPLAY_BUDGET_BYTES", int, 64 * 1024 * 1024, _D,
       "replay pages in memory across all streams, in bytes; a replay beyond it waits for room",
       "replay_budget_bytes", minimum=1),
    _s("SSE_RETENTION_SECONDS", float, 7 * 24 * 3600.0, _D, "messages older than this are deleted in the background",
       "store.retention_seconds", positive=True),
    _s("SSE_RETENTION_INTERVAL_SECONDS", float, 60.0, _D, "how often retention runs",
       "store.retention_interval_seconds", positive=True),
    _s("SSE_STATE_MAX_KEYS", int, 100_000, _D,
       "open keys kept in the latest state (`/events?snapshot=1`); past it the keys idle longest leave (0: off)",
       "store.state_max_keys", minimum=0),
    # Server
    _s("SSE_HOST", str, "127.0.0.1", _S, "address `sse-batcher serve` listens on", "host"),
    _s("SSE_PORT", int, 8000, _S, "port `sse-batcher serve` listens on", "port", minimum=0, maximum=65535),
    _s("SSE_PING_SECONDS", float, 15.0, _S, "keep-alive comment interval of a stream", "ping_seconds", positive=True),
    _s("SSE_RETRY_MILLISECONDS", int, 3000, _S, "the `retry:` reconnect hint sent to clients", "retry_milliseconds",
       minimum=1),
    _s("SSE_FANOUT_INTERVAL_SECONDS", float, 0.03, _S,
       "while messages keep coming, each stream is written at most once per interval (0: every commit)",
       "fanout_interval_seconds", minimum=0, maximum=5),
    _s("SSE_FANOUT_INTERVAL_MAX_SECONDS", float, 0.25, _S,
       "the longest the fan-out interval stretches to while the server cannot keep up",
       "fanout_interval_max_seconds", minimum=0, maximum=5),
    _s("SSE_CLIENT_QUEUE_SIZE", int, 1000, _S, "messages a client may lag before it catches up from PostgreSQL",
       "client_queue_size", minimum=1),
    _s("SSE_CLIENT_SEND_TIMEOUT_SECONDS", float, 30.0, _S, "a peer that accepts nothing this long is closed",
       "client_send_timeout_seconds", positive=True),
    _s("SSE_HEADER_TIMEOUT_SECONDS", float, 10.0, _S,
       "a request's line and headers must arrive within this (from the connection or its first byte), else 408",
       "header_timeout_seconds", positive=True),
    _s("SSE_BODY_TIMEOUT_SECONDS", float, 30.0, _S,
       "a request's whole body must arrive within this after its headers, else 408 and the connection closes",
       "body_timeout_seconds", positive=True),
    _s("SSE_MAX_HEADER_BYTES", int, 64 * 1024, _S, "largest request line and headers together (431 beyond)",
       "max_header_bytes", minimum=1024),
    _s("SSE_MAX_CLIENTS", int, 10_000, _S, "open streams; one more gets 503", "max_clients", minimum=1),
    _s("SSE_MAX_REQUEST_BYTES", int, 1024 * 1024, _S, "largest publish body (413 beyond, checked while reading)",
       "max_request_bytes", minimum=1),
    _s("SSE_MAX_REQUEST_EVENTS", int, 10_000, _S, "events in one publish (413 beyond)", "max_request_events",
       minimum=1),
    _s("SSE_PUBLISH_WAIT_TIMEOUT_SECONDS", float, 10.0, _S,
       "how long `POST /api/events?wait=stored` waits for the commit before 504", "publish_wait_timeout_seconds",
       positive=True),
    _s("SSE_PUBLISH_TOKEN", str, None, _S, "bearer token required to publish", "publish_token", optional=True,
       secret=True),
    _s("SSE_SUBSCRIBE_TOKEN", str, None, _S, "bearer token (or `?token=`) required to subscribe",
       "subscribe_token", optional=True, secret=True),
    # Security: see docs/security.md.
    _s("SSE_PUBLISH_TOKENS_FILE", Path, None, _X,
       "file of publish tokens, one a line (`#` comments); re-read when it changes", "publish_tokens_file",
       optional=True),
    _s("SSE_SUBSCRIBE_TOKENS_FILE", Path, None, _X,
       "file of subscribe tokens, one a line (`#` comments); re-read when it changes", "subscribe_tokens_file",
       optional=True),
    _s("SSE_CORS_ORIGINS", tuple, (), _X,
       "comma-separated origins allowed to subscribe and publish from a browser (`*`: any, without credentials); "
       "unset: CORS off", "cors_origins"),
    _s("SSE_ALLOWED_HOSTS", tuple, (), _X,
       "comma-separated `Host` names served besides localhost, IP literals and SSE_HOST (`*.example.com`: its "
       "subdomains; `*`: any); any other Host gets 400", "allowed_hosts"),
    _s("SSE_PUBLISH_RATE_LIMIT", float, 0.0, _X,
       "events per second per publish token (per client address without tokens); 0: no limit",
       "publish_rate_limit", minimum=0),
    _s("SSE_PUBLISH_RATE_BURST", int, None, _X,
       "events a publisher may send at once above the rate; unset: twice the rate (at least 1)",
       "publish_rate_burst", optional=True, minimum=1),
    _s("SSE_STREAM_TOKEN_SECRET", str, None, _X,
       "HMAC key of short-lived stream tokens (16+ characters); "
       "unset: random per server (one for all `--workers`), so hosts must share it",
       "stream_token_secret", optional=True, secret=True),
    _s("SSE_STREAM_TOKEN_MAX_SECONDS", float, 3600.0, _X, "longest lifetime a stream token may be given",
       "stream_token_max_seconds", positive=True),
    _s("SSE_MAX_CLIENTS_PER_IP", int, None, _X, "open streams per client address (429 beyond); unset: no cap",
       "max_clients_per_ip", optional=True, minimum=1),
    _s("SSE_MAX_STREAM_SECONDS", float, None, _X,
       "a stream is ended after this long plus up to 10% jitter (clients resume); unset: no cap",
       "max_stream_seconds", optional=True, positive=True),
    # Nodes
    _s("SSE_FOLLOW_POLL_SECONDS", float, 1.0, _N,
       "safety poll of the log follower, for notifications lost across a reconnect", "follow_poll_seconds",
       positive=True),
    _s("SSE_NODE_ID", str, None, _N,
       "this node's name in `sse_nodes`, /api/stats and /metrics; unset: host name and slot (`myhost-0`); "
       "with `--workers N`, `-<index>` is appended", "node_id", optional=True),
    _s("SSE_NODE_HEARTBEAT_SECONDS", float, 2.0, _N,
       "how often a node writes its `sse_nodes` row; three missed beats show it as gone",
       "node_heartbeat_seconds", positive=True),
    _s("SSE_WORKERS", int, 1, _N, "server processes `sse-batcher serve` runs on one port (`--workers` wins)",
       "workers", minimum=1, maximum=64),
    # Digests: long per-type windows, kept in PostgreSQL
    _s("SSE_DIGEST_INTERVAL_SECONDS", float, 1.0, _G,
       "how often each node looks for digest windows to close (one node does the work at a time)",
       "digest_interval_seconds", positive=True),
    _s("SSE_DIGEST_GRACE_SECONDS", float, 2.0, _G,
       "a digest window closes this long after its end, so events emitted just before it are stored first",
       "digest_grace_seconds", minimum=0),
    # Demo and workers
    _s("SSE_DEMO_RATE", float, 20.0, _W, "demo jobs per second", "demo_rate", positive=True),
    _s("SSE_WORKER_QUEUE_SIZE", int, 10_000, _W, "jobs a worker may hold queued (a demo burst asks up to 10,000)",
       minimum=1),
)  # fmt: skip

_BY_NAME: Final[Mapping[str, Setting]] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The setting called ``name``.

    Raises:
        KeyError: there is none.
    """
    return _BY_NAME[name]


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting's current value, by name, from ``environ`` (default: the process environment).

    Raises:
        SettingError: a variable is set but invalid (the message names it).
    """
    env = os.environ if environ is None else environ
    return {s.name: s.value(env) for s in SETTINGS}


def markdown_table() -> str:
    """The settings table of docs/configuration.md, one row per setting, in table order."""
    rows = ["| variable | default | bounds | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = s.shown_default
        if s.default is not None and s.type in (str, Path):
            default = f"`{default}`"
        rows.append(f"| `{s.name}` | {default} | {s.bounds} | {s.doc} |")
    return "\n".join(rows) + "\n"


# The defaults every config dataclass starts from: each is read from the environment when it is
# used (module ``__getattr__`` below), never at import, so that a bad server setting cannot stop
# ``import sse_batcher.batcher``, and a config built later sees the environment as it is then.
if TYPE_CHECKING:
    SSE_BATCH_SIZE: int
    SSE_BATCH_TIMEOUT_SECONDS: float
    SSE_BATCH_MAX_RETRIES: int
    SSE_BATCH_RETRY_DELAY: float
    SSE_BATCHING_ENABLED: bool
    SSE_MAX_BUFFERED_EVENTS: int
    SSE_MAX_EVENT_BYTES: int
    SSE_EMIT_TIMEOUT_SECONDS: float
    SSE_SHUTDOWN_TIMEOUT_SECONDS: float
    SSE_DYNAMIC_BATCHING: bool
    SSE_BATCH_STRATEGY: str
    SSE_BATCH_AGE_TARGET_SECONDS: float
    SSE_BATCH_STRATEGY_B: str | None
    SSE_AB_SPLIT: float
    SSE_BATCH_SIZE_MIN: int
    SSE_BATCH_SIZE_MAX: int
    SSE_BATCH_TIMEOUT_MIN_SECONDS: float
    SSE_BATCH_LATENCY_TARGET_SECONDS: float
    SSE_LOAD_LOOP_LAG_HIGH_SECONDS: float
    SSE_LOAD_LOW_PERCENT: float
    SSE_LOAD_HIGH_PERCENT: float
    SSE_LOAD_SAMPLE_SECONDS: float
    SSE_BATCH_ADJUST_COOLDOWN_SECONDS: float
    SSE_BREAKER_FAILURES: int
    SSE_BREAKER_RESET_SECONDS: float
    SSE_RULES_FILE: Path | None
    DATABASE_URL: str | None
    SSE_DATA_DIR: Path
    SSE_DB_POOL_SIZE: int
    SSE_STORE_TIMEOUT_SECONDS: float
    SSE_REPLAY_PAGE_SIZE: int
    SSE_RETENTION_SECONDS: float
    SSE_RETENTION_INTERVAL_SECONDS: float
    SSE_HOST: str
    SSE_PORT: int
    SSE_PING_SECONDS: float
    SSE_RETRY_MILLISECONDS: int
    SSE_FANOUT_INTERVAL_SECONDS: float
    SSE_FANOUT_INTERVAL_MAX_SECONDS: float
    SSE_CLIENT_QUEUE_SIZE: int
    SSE_CLIENT_SEND_TIMEOUT_SECONDS: float
    SSE_MAX_CLIENTS: int
    SSE_MAX_REQUEST_BYTES: int
    SSE_MAX_REQUEST_EVENTS: int
    SSE_PUBLISH_TOKEN: str | None
    SSE_PUBLISH_WAIT_TIMEOUT_SECONDS: float
    SSE_SUBSCRIBE_TOKEN: str | None
    SSE_PUBLISH_TOKENS_FILE: Path | None
    SSE_SUBSCRIBE_TOKENS_FILE: Path | None
    SSE_CORS_ORIGINS: tuple[str, ...]
    SSE_PUBLISH_RATE_LIMIT: float
    SSE_PUBLISH_RATE_BURST: int | None
    SSE_STREAM_TOKEN_SECRET: str | None
    SSE_STREAM_TOKEN_MAX_SECONDS: float
    SSE_MAX_CLIENTS_PER_IP: int | None
    SSE_MAX_STREAM_SECONDS: float | None
    SSE_FOLLOW_POLL_SECONDS: float
    SSE_NODE_ID: str | None
    SSE_NODE_HEARTBEAT_SECONDS: float
    SSE_WORKERS: int
    SSE_DIGEST_INTERVAL_SECONDS: float
    SSE_DIGEST_GRACE_SECONDS: float
    SSE_DEMO_RATE: float
    SSE_WORKER_QUEUE_SIZE: int
    SSE_MAX_MESSAGE_BYTES: int
    SSE_MAX_BUFFERED_BYTES: int
    SSE_ALLOWED_HOSTS: tuple[str, ...]
    SSE_DB_WAIT_SECONDS: float
    SSE_REPLAY_PAGE_BYTES: int
    SSE_REPLAY_BUDGET_BYTES: int
    SSE_HEADER_TIMEOUT_SECONDS: float
    SSE_BODY_TIMEOUT_SECONDS: float
    SSE_MAX_HEADER_BYTES: int
    SSE_BATCH_LEADING_EDGE: bool
    SSE_STATE_MAX_KEYS: int


def __getattr__(name: str) -> Any:
    """A setting's constant (``constants.SSE_BATCH_SIZE``): its value in the environment now.

    Raises:
        SettingError: the variable is set but invalid (the message names it).
        AttributeError: ``name`` is no setting.
    """
    found = _BY_NAME.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return found.value(os.environ)


if __name__ == "__main__":  # pragma: no cover - prints docs/configuration.md's table
    print(markdown_table())
