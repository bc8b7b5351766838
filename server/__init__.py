"""sse-batcher's HTTP server: the Starlette app, the SSE hub, the CLI, the embedded PostgreSQL."""

from __future__ import annotations

from .app import create_app
from .config import ServerConfig
from .hub import Hub, HubStats

__all__ = ["Hub", "HubStats", "ServerConfig", "create_app"]
