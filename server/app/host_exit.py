"""Noticing that the host ASGI server is shutting down, so the open streams end instead of holding it up.

An SSE stream never ends on its own, and uvicorn's shutdown tells the app nothing until every
response is finished: on SIGINT or SIGTERM it stops listening, marks each busy connection "close
after this response" and waits for those responses (for ever, unless ``timeout_graceful_shutdown``
is set), and only then runs the lifespan's shutdown. A ``create_app()`` mounted in a Starlette or
FastAPI app would keep its streams, and so uvicorn, running after Ctrl-C.

How the app finds out instead, without module-level state and without patching uvicorn: while it
serves, uvicorn's ``Server.handle_exit`` is the process's SIGINT handler (uvicorn installs it with
``signal.signal`` for the whole of ``serve()``, around the lifespan's startup). At startup
:func:`host_server` reads that handler and keeps its bound server, and :func:`watch_host_exit` looks
at the server's ``should_exit`` flag, the one uvicorn's own main loop checks every 0.1 s, at the same
pace. Once it is set, the runtime drains: publishes are refused, accepted events are stored and
delivered, and every stream ends after what it had queued, so uvicorn's wait ends at once.
sse-starlette's ``AppStatus`` does this with a process-wide flag and a patched
``uvicorn.Server.handle_exit``; here the server is found per app, and nothing is patched.

``sse-batcher serve`` drains from its own ``shutdown()`` as well; under a host server that is not
uvicorn (no such handler is found) call the runtime's ``drain()`` before stopping the server.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["HostServer", "host_server", "watch_host_exit"]

logger = logging.getLogger(__name__)

# uvicorn's main loop looks at should_exit this often; looking more often would gain nothing.
_POLL_SECONDS = 0.1


@runtime_checkable
class HostServer(Protocol):
    """What is read of the host server: uvicorn's ``Server`` has this flag."""

    should_exit: bool


def host_server() -> HostServer | None:
    """The uvicorn server that installed the current SIGINT handler, or None (another host, no handler)."""
    handler = signal.getsignal(signal.SIGINT)
    server = getattr(handler, "__self__", None)
    if isinstance(server, HostServer) and isinstance(server.should_exit, bool):
        return server
    return None


async def watch_host_exit(server: HostServer, on_exit: Callable[[], None]) -> None:
    """Call ``on_exit`` once ``server`` is asked to exit; return then (cancel it to stop watching)."""
    while not server.should_exit:  # noqa: ASYNC110 - uvicorn offers a flag, no event to await
        await anyio.sleep(_POLL_SECONDS)
    logger.info("the server is shutting down: ending the streams")
    on_exit()
