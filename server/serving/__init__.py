"""Serving: run the app under uvicorn, as one process or as N on one socket.

Enters: a :class:`~sse_batcher.server.ServerConfig`, from the command line and the environment.
Inside: :class:`GracefulServer` is uvicorn with a shutdown that delivers the last events before it
closes the streams; :mod:`.supervisor` starts the embedded PostgreSQL once, binds one socket and
watches N such processes.
Leaves: running nodes, each with its own :mod:`sse_batcher.server.app`.
Next: :mod:`sse_batcher.server.app`, which each process serves.
"""

from __future__ import annotations

from sse_batcher.server.serving.serve import GracefulServer, run
from sse_batcher.server.serving.supervisor import Supervisor, run_workers

__all__ = ["GracefulServer", "Supervisor", "run", "run_workers"]
