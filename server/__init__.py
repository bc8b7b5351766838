"""sse-batcher's HTTP server: the Starlette app, the SSE hub, the CLI, the embedded PostgreSQL, a client."""

from __future__ import annotations

from .app import create_app
from .client import StreamEvent, StreamRefusedError, asubscribe, subscribe, unroll
from .config import ServerConfig
from .hub import Hub, HubStats

__all__ = [
    "Hub",
    "HubStats",
    "ServerConfig",
    "StreamEvent",
    "StreamRefusedError",
    "asubscribe",
    "create_app",
    "subscribe",
    "unroll",
]
