"""``embedded_database(path)``: a real PostgreSQL for a Python program, with nothing to install.

The same cluster ``sse-batcher serve`` uses (``path/pgdata``, default ``SSE_DATA_DIR``), under the
same lock: a program and a server (or two programs) on one directory share one running database,
and whichever leaves last stops it. :func:`sse_batcher.server.app.wiring.open_runtime` starts its
database through this too, so there is one way in.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from sse_batcher import constants
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

__all__ = ["embedded_database"]


@asynccontextmanager
async def embedded_database(path: str | os.PathLike[str] | None = None) -> AsyncIterator[str]:
    """Start (or join) the embedded PostgreSQL kept under ``path`` and yield its dsn.

    ``path`` defaults to ``SSE_DATA_DIR`` (``./.sse-batcher``). The first start runs initdb (about
    a second); later ones reuse the data. On exit the database stops unless another process or
    context still uses it.

    Raises:
        subprocess.CalledProcessError: initdb or pg_ctl failed (the server log is logged).
        subprocess.TimeoutExpired: the server did not start in time.
    """
    server = EmbeddedPostgres(Path(constants.SSE_DATA_DIR if path is None else path))
    try:
        dsn = await anyio.to_thread.run_sync(server.start)
        yield dsn
    finally:
        # Shielded: a cancelled program still gives its share back, or the database would outlive it.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.release)
