"""A throwaway embedded PostgreSQL for benchmarks: started in a temp dir, removed afterwards."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

__all__ = ["machine", "postgres", "postgres_cpu"]


@contextmanager
def postgres() -> Iterator[EmbeddedPostgres]:
    """Start an embedded PostgreSQL in a temporary directory; stop and remove it afterwards."""
    root = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    os.chmod(root, 0o755)
    server = EmbeddedPostgres(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def machine() -> str:
    """One line describing this machine, for bench/RESULTS.md."""
    freq = psutil.cpu_freq()
    mhz = f" @ {freq.current:.0f} MHz" if freq else ""
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores{mhz}, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, {platform.system()}"
    )


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds (user + system) of the postmaster and every process it runs now.

    A backend's time counts only while it lives: read it while the connections measured are open.
    """
    pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    master = psutil.Process(pid)
    total = 0.0
    for process in [master, *master.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total
