"""Running the servers the benchmarks compare, and measuring their processes.

One place that knows how to start each server on a free port (sse-batcher under uvicorn or
granian, the plain sse-starlette peer, the no-database probe, nginx + nchan), what the load tool
needs to drive it, and how to read a process tree's CPU time and memory with psutil.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.nchan import LOADTEST_ARGS as NCHAN_LOADTEST_ARGS
from bench.nchan import STREAM_PATH as NCHAN_STREAM_PATH
from bench.nchan import nchan_server

__all__ = [
    "ROOT",
    "SERVERS",
    "workers_of",
    "Running",
    "free_port",
    "loadtest",
    "postmaster_pid",
    "raise_open_files",
    "running",
    "tree_cpu_seconds",
    "tree_rss_bytes",
]

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("sse-batcher", "peer", "probe", "nchan")


def workers_of(kind: str) -> int | None:
    """``sse-batcher`` is 1 process, ``sse-batcher-w4`` is ``serve --workers 4``; None for the peers."""
    if kind == "sse-batcher":
        return 1
    prefix = "sse-batcher-w"
    if kind.startswith(prefix) and kind[len(prefix) :].isdigit():
        return int(kind[len(prefix) :])
    return None


_START_SECONDS = 90.0


@dataclass(frozen=True, slots=True)
class Running:
    """A started server: its name, base URL, the root of its process tree, the load tool's extra flags."""

    kind: str
    url: str
    pid: int
    process: subprocess.Popen[bytes]
    loadtest_args: list[str] = field(default_factory=list)
    stream_path: str = "/events"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files(wanted: int = 30_000) -> int:
    """Raise this process's open-files soft limit towards ``wanted`` (children inherit it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _command(kind: str, port: int, dsn: str | None, asgi: str) -> list[str]:
    workers = workers_of(kind)
    if workers is not None and asgi == "granian":
        granian = shutil.which("granian") or "granian"
        return [
            granian, "--interface", "asgi", "--loop", "uvloop", "--http", "1", "--no-ws",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            # Its default admits backlog/workers = 1024 requests at once: too few for open streams.
            "--backpressure", "30000", "--backlog", "4096", "--log-level", "warning", "sse_batcher.server.asgi:app",
        ]  # fmt: skip
    if workers is not None:
        command = [
            sys.executable,
            "-m",
            "sse_batcher.server",
            "serve",
            "--no-demo",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        command += ["--workers", str(workers)] if workers > 1 else []
        return command + (["--database-url", dsn] if dsn else [])
    if kind == "peer":
        if dsn is None:
            raise ValueError("the peer needs a database")
        return [sys.executable, "-m", "bench.peer_app", "--port", str(port), "--database-url", dsn]
    if kind == "probe":
        return [sys.executable, "-m", "bench.probe_app", "--port", str(port)]
    raise ValueError(f"unknown server {kind!r}; choose from {', '.join(SERVERS)}")


@contextmanager
def running(
    kind: str,
    *,
    dsn: str | None,
    data_dir: Path,
    env: dict[str, str] | None = None,
    asgi: str = "uvicorn",
    stop_signal: int = signal.SIGTERM,
) -> Iterator[Running]:
    """Start ``kind`` on a free port for the block and stop it afterwards (SIGTERM, then SIGKILL).

    ``dsn`` is the database for sse-batcher (``None``: its own embedded PostgreSQL under
    ``data_dir``) and the peer; the probe and nchan use none. ``asgi`` picks sse-batcher's server.
    """
    port = free_port()
    if kind == "nchan":
        with nchan_server(port) as nginx:
            yield Running(
                kind, f"http://127.0.0.1:{port}", nginx.pid, nginx, list(NCHAN_LOADTEST_ARGS), NCHAN_STREAM_PATH
            )
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o755)  # the embedded PostgreSQL may run as another user
    full_env = {**os.environ, "SSE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("DATABASE_URL", None)
    if dsn is not None and workers_of(kind) is not None:
        full_env["DATABASE_URL"] = dsn
    with ExitStack() as stack:
        process = subprocess.Popen(_command(kind, port, dsn, asgi), cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL)
        stack.callback(_stop, process, stop_signal)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(kind, url, process)
        yield Running(kind, url, process.pid, process)


def _wait_ready(kind: str, url: str, process: subprocess.Popen[bytes]) -> None:
    path = "/healthz" if workers_of(kind) is not None else "/api/stats"
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with {process.returncode} at startup")
        time.sleep(0.1)
    raise RuntimeError(f"{kind} did not start in {_START_SECONDS:g} s")


def _stop(process: subprocess.Popen[bytes], stop_signal: int) -> None:
    if process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(process.pid).children(recursive=True):
            with suppress(psutil.Error):
                child.kill()
        process.kill()
        process.wait()


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants, plus the descendants they reaped."""
    total = 0.0
    for process in _tree(pid):
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (shared pages are counted in each)."""
    total = 0
    for process in _tree(pid):
        with suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def postmaster_pid(pgdata: Path) -> int | None:
    """The postmaster's pid from ``postmaster.pid``, or ``None``."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def loadtest(
    server: Running,
    *,
    clients: int,
    rate: float,
    count: int,
    batch_per_request: int,
    settle_seconds: float = 10.0,
    publisher_process: bool = True,
) -> dict[str, Any]:
    """Run ``sse-batcher loadtest`` against ``sse_batcher.server`` in its own process; its JSON result.

    The tool publishes from a second process (``--publisher-process``) unless told not to: at
    1,000 clients its readers fill a core, and POSTs from the same loop would wait behind them.
    Adds ``loadtool_cpu_seconds`` (the load tool's CPU time, both processes) to the result.
    """
    duration = max(count / rate, 0.1)
    command = [
        sys.executable, "-m", "sse_batcher.server", "loadtest", "--url", server.url, "--clients", str(clients),
        "--rate", str(rate), "--count", str(count), "--duration", f"{duration:.3f}",
        "--batch-per-request", str(batch_per_request), "--settle", str(settle_seconds), "--json", "--quiet",
        *server.loadtest_args, *(["--publisher-process"] if publisher_process else []),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, timeout=duration + settle_seconds + 180, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadtest failed: {result.stderr.decode()[-2000:]}")
    point: dict[str, Any] = json.loads(lines[-1])
    point["loadtool_cpu_seconds"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return point
