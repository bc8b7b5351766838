"""Ctrl-C ends open streams in any uvicorn host: a real uvicorn process serving an app that mounts create_app()."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import anyio
import httpx
import pytest

from sse_batcher.server.app.host_exit import host_server
from tests.server_process import free_port, until_healthy

ROOT = Path(__file__).resolve().parents[3]
SHUTDOWN_TIMEOUT_SECONDS = 10

APPS = {
    "starlette": """
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from sse_batcher.server import create_app

        live = create_app()
        app = Starlette(routes=[Mount("/live", app=live)], lifespan=live.router.lifespan_context)
    """,
    "fastapi": """
        from fastapi import FastAPI

        from sse_batcher.server import create_app

        live = create_app()
        app = FastAPI(lifespan=live.router.lifespan_context)
        app.mount("/live", live)
    """,
}


@pytest.mark.parametrize("host", sorted(APPS))
async def test_sigint_to_uvicorn_ends_an_open_stream_and_exits_0(host: str, dsn: str, tmp_path: Path) -> None:
    (tmp_path / "host_app.py").write_text(textwrap.dedent(APPS[host]), encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSE_")}
    env |= {
        "DATABASE_URL": dsn,
        "SSE_DATA_DIR": str(tmp_path / "data"),
        "SSE_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    command = [sys.executable, "-m", "uvicorn", "host_app:app", "--port", str(port), "--log-level", "warning"]
    base = f"http://127.0.0.1:{port}/live"
    async with await anyio.open_process(command, cwd=tmp_path, env=env, stdout=None, stderr=None) as process:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await until_healthy(client, base, 30)
                async with client.stream("GET", f"{base}/events", timeout=None) as stream:
                    lines = stream.aiter_lines()
                    with anyio.fail_after(10):
                        assert (await anext(lines)).startswith("retry:")
                    process.send_signal(signal.SIGINT)
                    # The stream ends (the server closes it), and then the process exits 0.
                    with anyio.fail_after(SHUTDOWN_TIMEOUT_SECONDS):
                        async for _ in lines:
                            pass
                        assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def test_no_host_server_is_found_outside_uvicorn() -> None:
    assert host_server() is None
