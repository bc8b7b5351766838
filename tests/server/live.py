"""A real uvicorn serving the app in the test's event loop, on a free port, with a real PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette

from sse_batcher.batcher import BatcherConfig
from sse_batcher.server import ServerConfig, create_app
from sse_batcher.server.app.runtime import Runtime
from sse_batcher.server.serving.serve import GracefulServer, uvicorn_config

__all__ = ["LiveServer", "make_config", "serving", "until"]


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``condition()`` holds (counters of the server under test have no event to await)."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - polling a counter, bounded by fail_after
            await anyio.sleep(0.005)


def make_config(dsn: str, data_dir: Path, **overrides: Any) -> ServerConfig:
    """A test config: no demo, quick flushes, small limits where a test needs them."""
    batcher_options = {"batch_timeout_seconds": 0.02, "data_dir": data_dir, **overrides.pop("batcher", {})}
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "database_url": dsn,
        "data_dir": data_dir,
        "demo": False,
        "log_level": "warning",
        "shutdown_timeout_seconds": 5.0,
        "batcher": BatcherConfig(**batcher_options),
    }
    values.update(overrides)
    return ServerConfig(**values)


@dataclass
class LiveServer:
    url: str
    app: Starlette
    server: GracefulServer

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime | None = self.app.state.runtime
        if runtime is None:
            raise RuntimeError("the app is not running")
        return runtime

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)


@asynccontextmanager
async def serving(
    config: ServerConfig, *, app: Starlette | None = None, inner: Starlette | None = None, prefix: str = ""
) -> AsyncIterator[LiveServer]:
    """Serve ``app`` (default ``create_app(config)``) until the block ends, then shut down gracefully.

    ``inner`` is the sse-batcher app when ``app`` is a parent that mounts it under ``prefix``.
    """
    app = app if app is not None else create_app(config)
    inner = inner if inner is not None else app
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    started = anyio.Event()
    server = GracefulServer(
        uvicorn_config(app, config, log_level="warning"),
        inner,
        drain_timeout_seconds=2.0,
        on_started=lambda _: started.set(),
    )
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [sock])
        with anyio.fail_after(30):
            await started.wait()
        try:
            yield LiveServer(f"http://127.0.0.1:{port}{prefix}", inner, server)
        finally:
            server.should_exit = True
    sock.close()
