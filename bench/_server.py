"""``python -m server serve`` as a subprocess for benchmarks: start, kill -9, stop (SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["ServerUnderTest"]

ROOT = Path(__file__).resolve().parents[1]


class ServerUnderTest:
    """The server on a fixed port against ``dsn``, with its data directory; started again at will.

    ``demo`` runs the demo workers (``serve --demo``); ``env`` adds settings.
    """

    def __init__(
        self, dsn: str, data_dir: Path, port: int, *, demo: bool = False, env: dict[str, str] | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._port = port
        self._demo = demo
        self._env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "SSE_DATA_DIR": str(data_dir),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.log = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server is not running")
        return self.process.pid

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until ``/healthz`` answers 200.

        Raises:
            RuntimeError: the process exited first.
            TimeoutError: it did not become healthy in ``timeout`` seconds.
        """
        args = [
            sys.executable,
            "-m",
            "sse_batcher.server",
            "serve",
            "--port",
            str(self._port),
            "--log-level",
            "warning",
        ]
        args.append("--demo" if self._demo else "--no-demo")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server did not become healthy in {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown flush, no dead-letter write; what was only buffered is gone."""
        process, self.process = self.process, None
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM: the graceful path, which stores everything buffered before it exits."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
