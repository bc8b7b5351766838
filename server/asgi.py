"""An importable ASGI app, ``sse_batcher.server.asgi:app``, for ASGI servers other than uvicorn (granian, hypercorn).

``sse-batcher serve`` remains the way to run the server: it runs uvicorn through
:class:`sse_batcher.server.serving.serve.GracefulServer`, whose shutdown drains the app first (publishes refused, the
batcher flushed and fanned out, every stream ended after what it had queued). Another ASGI
server knows nothing of that drain: it runs the lifespan's shutdown, which stores what the
batcher holds, but whether the open streams are given those last events before their sockets
close is up to that server. bench/asgi_servers.py measures what granian does (bench/RESULTS.md).

The configuration comes from the environment (:meth:`ServerConfig.from_env`, the same variables
as ``serve``), read when this module is imported. The demo workers do not run here: they belong
to the dashboard demo of ``sse-batcher serve``.

Run: ``granian --interface asgi --loop uvloop sse_batcher.server.asgi:app``
"""

from __future__ import annotations

from sse_batcher.server.app.factory import create_app
from sse_batcher.server.config import ServerConfig

__all__ = ["app"]

app = create_app(ServerConfig.from_env(demo=False))
