"""One worker of ``serve --workers N``: the config it gets from the parent, and its process's main.

The parent (:mod:`.supervisor`) decides what each worker runs with and starts it; this module is
what crosses into the child. Each worker gets a share of the per-client limits
(:func:`share_limits`) and of the demo, a slot and node id of its own (:func:`worker_config`),
and runs the single-process server on the parent's socket (:func:`worker_main`), stopping itself
should the parent vanish. Apart from the supervisor so that module holds the watching alone;
``share_limits`` is re-exported there.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Final

from sse_batcher.server.config import ServerConfig
from sse_batcher.server.serving.serve import GracefulServer
from sse_batcher.server.serving.serve import run as serve_one

__all__ = ["share_limits", "worker_config", "worker_main"]

_PARENT_CHECK_SECONDS: Final = 1.0


def share_limits(config: ServerConfig) -> ServerConfig:
    """The config of one of ``config.workers`` workers: the per-client limits divided among them.

    The publish rate and burst, and the open streams per address, are each divided by the number
    of workers, rounded down, and at least 1 (the rate is divided exactly). Together the workers then
    let a client no more than the configured limit. The price: a client may be refused before it
    reaches it, when its connections crowd one worker, and a request may carry at most a worker's
    share of the burst (413 beyond).
    """
    workers = config.workers
    if workers == 1:
        return config
    burst = config.publish_rate_burst
    if config.publish_rate_limit > 0:
        burst = max(1, config.publish_burst // workers)
    per_address = config.max_clients_per_ip
    if per_address is not None:
        per_address = max(1, per_address // workers)
    return replace(
        config,
        publish_rate_limit=config.publish_rate_limit / workers,
        publish_rate_burst=burst,
        max_clients_per_ip=per_address,
    )


def worker_config(config: ServerConfig, index: int) -> ServerConfig:
    """The config worker ``index`` runs with: its slot, its node id, and its share of the demo."""
    node_id = config.node_id
    if node_id is not None and config.workers > 1:
        node_id = f"{node_id}-{index}"
    # Every worker runs a share of the demo, so a burst works on whichever worker takes the request
    # and every page load shows the same dashboard.
    return replace(config, demo_rate=config.demo_rate / config.workers, slot=index, node_id=node_id)


def worker_main(config: ServerConfig, sock: socket.socket, ready: Connection, parent_pid: int) -> None:
    """A worker process: the single-process server on the parent's socket."""
    os.setpgrp()
    threading.Thread(target=_stop_when_orphaned, args=(parent_pid,), daemon=True, name="parent-watch").start()

    def started(_server: GracefulServer) -> None:
        ready.send(os.getpid())
        ready.close()

    sys.exit(serve_one(config, sockets=[sock], on_started=started))


def _stop_when_orphaned(parent_pid: int) -> None:
    """Drain and exit (SIGTERM to itself) once the parent is gone, so no worker is left behind."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
