"""Slow and oversized requests against ``sse-batcher serve`` and against plain uvicorn running the same app.

``python -m bench.slowloris [--connections 300] [--header-timeout 2]``

For each server (a subprocess on a fresh database of an embedded PostgreSQL, which is not counted):

- ``serve``: ``sse-batcher serve`` with ``SSE_HEADER_TIMEOUT_SECONDS=--header-timeout``, whose uvicorn
  protocol has the connection limits (server/serving/protocol.py);
- ``plain uvicorn``: ``uvicorn --http httptools sse_batcher.server.asgi:app``, the same app without them;

it opens ``--connections`` sockets, sends half of them part of a request's headers and the other half
nothing, waits the header timeout plus 3 s, and counts the connections the server closed and its open
file descriptors. Then it sends one request whose headers are 12 MB and reports the answer's status and
the server CPU seconds it cost. About 20 s per server.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench._pg import machine, postgres
from bench._servers import free_port, raise_open_files

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
_BIG_HEADER_BYTES = 12_000_000


def _start(kind: str, dsn: str, data: Path, port: int, header_timeout: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "SSE_DATA_DIR": str(data),
        "SSE_HEADER_TIMEOUT_SECONDS": str(header_timeout),
        "PYTHONPATH": str(ROOT),
    }
    if kind == "serve":
        args = [sys.executable, "-m", "sse_batcher.server", "serve", "--port", str(port), "--no-demo"]
    else:
        args = [sys.executable, "-m", "uvicorn", "--http", "httptools", "--port", str(port)]
        args += ["--log-level", "warning", "sse_batcher.server.asgi:app"]
    log = (data / "server.log").open("ab")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"{kind} did not become healthy")


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return True  # EOF
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def _big_header(port: int) -> tuple[str, float]:
    """Send one request with 12 MB of headers; return the status line and the time to the answer."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * _BIG_HEADER_BYTES + b"\r\n\r\n"
        try:
            sock.sendall(request)
        except ConnectionError:
            pass
        sock.settimeout(60)
        try:
            answer = sock.recv(200)
        except (ConnectionError, TimeoutError):
            answer = b""
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed, no answer)"
    return status, time.perf_counter() - started


def _run(kind: str, dsn: str, connections: int, header_timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sse-slowloris-") as data:
        port = free_port()
        process = _start(kind, dsn, Path(data), port, header_timeout)
        try:
            server = psutil.Process(process.pid)
            fds_before = server.num_fds()
            sockets = []
            for i in range(connections):
                sock = socket.create_connection(("127.0.0.1", port))
                if i % 2:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                sockets.append(sock)
            time.sleep(header_timeout + 3)
            closed = sum(_closed(sock) for sock in sockets)
            fds_held = server.num_fds() - fds_before
            for sock in sockets:
                sock.close()
            time.sleep(1)
            cpu_before = sum(server.cpu_times()[:2])
            status, seconds = _big_header(port)
            time.sleep(0.5)
            cpu = sum(server.cpu_times()[:2]) - cpu_before
            print(
                f"{kind:<14} closed {closed:>4}/{connections} after {header_timeout + 3:g} s, "
                f"fds still held {fds_held:>4}; 12 MB header: {status!r} in {seconds:.2f} s, server CPU {cpu:.2f} s"
            )
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--header-timeout", type=float, default=2.0)
    args = parser.parse_args()
    raise_open_files(args.connections * 4 + 1000)
    print(machine())
    with postgres() as pg:
        for kind in ("serve", "plain uvicorn"):
            dsn = pg.create_database("bench_slowloris", replace=True)
            _run(kind, dsn, args.connections, args.header_timeout)


if __name__ == "__main__":
    main()
