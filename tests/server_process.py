"""``python -m server serve`` as a real process on a free port, for tests that need signals or restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx

from bench.chaos.proxy import ChaosProxy, unix_socket_of

__all__ = ["ServerProcess", "free_port", "proxied", "until_healthy"]


async def proxied(dsn: str) -> tuple[ChaosProxy, str]:
    """A started proxy to the embedded PostgreSQL of ``dsn``, and the dsn a node reaches it by (over TCP)."""
    proxy = ChaosProxy(unix_socket_of(dsn))
    port = await proxy.start()
    database = dsn.split("?")[0].rsplit("/", 1)[1]
    return proxy, f"postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until_healthy(client: httpx.AsyncClient, base: str, timeout: float) -> None:
    """Wait until ``{base}/healthz`` answers 200, through a server that may not listen yet.

    Raises:
        TimeoutError: not healthy within ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while True:
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.1)


class ServerProcess:
    """``python -m server serve`` on a free port; stop() sends SIGTERM, start() again reuses the port.

    ``dsn=None``: no DATABASE_URL, so the server uses the embedded PostgreSQL under ``data_dir``.
    """

    def __init__(self, dsn: str | None, data_dir: Path, *, demo: bool, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._dsn = dsn
        self._data_dir = data_dir
        self._demo = demo
        self._env = env or {}
        self._process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 30) -> None:
        self.launch()
        self.wait_healthy(timeout)

    def launch(self) -> None:
        """Start the process and return at once (it may not answer yet)."""
        env = {
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            **({"DATABASE_URL": self._dsn} if self._dsn is not None else {}),
            "SSE_DATA_DIR": str(self._data_dir),
            "SSE_BATCH_TIMEOUT_SECONDS": "0.2",
            "SSE_PING_SECONDS": "2",
            **self._env,
        }
        args = [sys.executable, "-m", "sse_batcher.server", "serve", "--port", str(self.port), "--log-level", "warning"]
        args.append("--demo" if self._demo else "--no-demo")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 30) -> None:
        """Wait until /healthz answers 200.

        Raises:
            RuntimeError: the process exited.
            TimeoutError: it was not healthy in time.
        """
        if self._process is None:
            raise RuntimeError("launch() first")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited with {self._process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server did not become healthy: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 20) -> int | None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
