"""The real command: ``python -m server serve`` as a subprocess, and its shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from anyio.abc import Process

from sse_batcher.server.client import unroll
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.server.sse import Received, events_of, read_until
from tests.server_process import ServerProcess, proxied

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _startup_line(process: Process) -> str:
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(30):
        async for chunk in process.stdout:
            buffer += chunk
            if b"\n" in buffer:
                return buffer.split(b"\n", 1)[0].decode()
    raise AssertionError(f"the server exited before printing its startup line: {buffer!r}")


async def _stored_seqs(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT data::text AS data FROM sse_events ORDER BY id")
    finally:
        await conn.close()
    seqs: list[int] = []
    for row in rows:
        seqs.extend(e["seq"] for e in unroll(row["data"]))
    return seqs


async def test_sigterm_stores_and_delivers_every_accepted_event_then_exits_0(dsn: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "SSE_DATA_DIR": str(tmp_path),
        "SSE_SHUTDOWN_TIMEOUT_SECONDS": "10",
        # Nothing flushes on its own during the test: only the shutdown's flush stores the burst.
        "SSE_BATCH_SIZE": "5000",
        "SSE_BATCH_TIMEOUT_SECONDS": "60",
        "SSE_DYNAMIC_BATCHING": "false",
    }
    env.pop("SSE_PUBLISH_TOKEN", None)
    env.pop("SSE_SUBSCRIBE_TOKEN", None)
    command = [sys.executable, "-m", "sse_batcher.server", "serve", "--no-demo", "--port", str(port)]
    async with await anyio.open_process(command, cwd=ROOT, env=env, stderr=None) as process:
        line = await _startup_line(process)
        assert line.startswith(f"sse-batcher: dashboard at http://127.0.0.1:{port}/  database: postgresql://")
        accepted: list[int] = []
        received = Received()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            async def burst(i: int) -> None:
                body = [{"type": "JOB_PROGRESS", "source": f"w{i % 3}", "data": {"i": i, "k": k}} for k in range(50)]
                try:
                    response = await client.post("/api/events", json=body)
                except httpx.HTTPError:
                    return  # refused at the door once shutdown began
                if response.status_code == 202:
                    accepted.extend(response.json()["seqs"])

            # The reader ends only when the server has delivered its last messages and closed the stream.
            with anyio.fail_after(15):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: read_until(client, received))
                    await received.connected.wait()
                    async with anyio.create_task_group() as publishers:
                        for i in range(20):
                            publishers.start_soon(burst, i)
                        await anyio.wait_all_tasks_blocked()
                        process.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                returncode = await process.wait()
    assert returncode == 0
    assert accepted, "no publish was accepted before the shutdown"
    stored = await _stored_seqs(dsn)
    assert set(accepted) <= set(stored)
    assert len(stored) == len(set(stored))
    delivered = [e["seq"] for e in events_of(received.messages)]
    assert set(accepted) <= set(delivered)
    assert len(delivered) == len(set(delivered))


async def test_sigterm_answers_requests_waiting_on_an_unreachable_database_504_and_503_then_exits_0(
    dsn: str, tmp_path: Path
) -> None:
    # The waits (a publish's 20 s, a resume lookup's 8 s) outlast uvicorn's grace for open responses
    # (1 s of these 5): the server must answer them with what it knows before that grace ends, not
    # let the cancellation make them 500s.
    proxy, node_dsn = await proxied(dsn)
    env = {
        "SSE_STORE_TIMEOUT_SECONDS": "8",
        "SSE_PUBLISH_WAIT_TIMEOUT_SECONDS": "20",
        "SSE_SHUTDOWN_TIMEOUT_SECONDS": "5",
    }
    server = ServerProcess(node_dsn, tmp_path, demo=False, env=env)
    try:
        await anyio.to_thread.run_sync(server.start)
        proxy.partition()  # bytes stop, nothing is closed: the commit neither succeeds nor fails
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            answer: list[httpx.Response] = []
            resumed: list[httpx.Response] = []
            exits: list[int | None] = []

            async def publish() -> None:
                body = [{"type": "T", "source": "s", "data": {"i": i}} for i in range(3)]
                answer.append(await client.post("/api/events?wait=stored", json=body))

            async def resume() -> None:
                async with client.stream("GET", "/events", headers={"Last-Event-ID": "1"}) as stream:
                    await stream.aread()
                    resumed.append(stream)

            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                tg.start_soon(resume)
                await anyio.sleep(1.0)
                exits.append(await anyio.to_thread.run_sync(server.stop))
            response = answer[0]
        assert response.status_code == 504, (response.status_code, response.text, server.log.read_text()[-3000:])
        body = response.json()
        assert set(body) >= {"error", "state", "kept", "ids"}
        assert body["ids"] == [None, None, None]
        assert resumed[0].status_code == 503, (resumed[0].status_code, resumed[0].text)
        assert resumed[0].json()["error"] == "the server is shutting down"
        assert resumed[0].headers["Retry-After"] == "1"
        assert resumed[0].headers["X-Content-Type-Options"] == "nosniff"
        assert "Exception in ASGI application" not in server.log.read_text()
        assert exits == [0]
    finally:
        proxy.heal()
        await anyio.to_thread.run_sync(server.stop)
        await proxy.aclose()


def test_sigterm_lets_demo_jobs_in_progress_finish_and_delivers_their_endings(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = pg_server.create_database(f"demo_{uuid.uuid4().hex[:12]}")
    server = ServerProcess(dsn, tmp_path, demo=True, env={"SSE_SHUTDOWN_TIMEOUT_SECONDS": "20"})
    server.start()
    delivered: list[dict[str, Any]] = []
    saw_starts = threading.Event()

    def read_stream() -> None:  # a connected client, reading until the server closes the stream
        with httpx.stream("GET", f"{server.url}events", timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    delivered.extend(unroll(line[6:]))
                    if sum(e["type"] == "JOB_STARTED" for e in delivered) >= 3:
                        saw_starts.set()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    try:
        # SIGTERM only once this client has seen jobs start: their endings are what must follow.
        if not saw_starts.wait(30):
            pytest.fail("the client never saw demo jobs start")
    finally:
        code = server.stop(timeout=30)
    reader.join(30)
    assert code == 0 and not reader.is_alive()
    assert "not delivered" not in server.log.read_text()
    started = {(e["source"], e["data"]["job_id"]) for e in delivered if e["type"] == "JOB_STARTED"}
    ended = {(e["source"], e["data"]["job_id"]) for e in delivered if e["type"] in ("JOB_COMPLETED", "JOB_FAILED")}
    assert started, "the client saw no job start"
    assert started <= ended, f"jobs whose ending never reached the client: {sorted(started - ended)[:5]}"


async def test_a_second_serve_on_the_same_data_dir_leaves_the_first_publishing_and_streaming(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    first = ServerProcess(None, data_dir, demo=False)
    second = ServerProcess(None, data_dir, demo=False)
    try:
        await anyio.to_thread.run_sync(first.start)
        await anyio.to_thread.run_sync(second.start)
        assert await anyio.to_thread.run_sync(second.stop) == 0

        async with httpx.AsyncClient(base_url=first.url, timeout=10) as client, anyio.create_task_group() as tg:
            received = Received()
            tg.start_soon(lambda: read_until(client, received))
            with anyio.fail_after(10):
                await received.connected.wait()
            answer = await client.post("/api/events?wait=stored", json={"type": "AFTER_SECOND_LEFT", "data": {"n": 1}})
            assert answer.status_code == 201, answer.text
            await received.wait_for(lambda r: any(e["type"] == "AFTER_SECOND_LEFT" for e in events_of(r.messages)))
            assert (await client.get("/healthz")).status_code == 200
            tg.cancel_scope.cancel()
    finally:
        second.stop()
        assert await anyio.to_thread.run_sync(first.stop) == 0
    # The last one out stopped the database.
    assert not EmbeddedPostgres(data_dir).running


async def _read_lines(process: Process, buffer: bytes, count: int) -> bytes:
    """Read stdout onto ``buffer`` until it holds ``count`` lines."""
    assert process.stdout is not None
    with anyio.fail_after(60):
        while buffer.count(b"\n") < count:
            buffer += await process.stdout.receive()
    return buffer


async def _demo_of(port: int, args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
    """Run ``serve`` with ``args``; return its first stdout lines and /api/stats' demo, then stop it."""
    command = [sys.executable, "-m", "sse_batcher.server", "serve", "--port", str(port), *args]
    async with await anyio.open_process(command, cwd=ROOT, env=env, stderr=None) as process:
        try:
            printed = await _read_lines(process, b"", 1)
            async with httpx.AsyncClient(timeout=10) as client:
                stats = (await client.get(f"http://127.0.0.1:{port}/api/stats")).json()
            if stats["demo"]["enabled"]:
                printed = await _read_lines(process, printed, 2)
        finally:
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                await process.wait()
    return printed.decode().splitlines(), stats["demo"]


def _serve_env(tmp_path: Path, dsn: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("SSE_")}
    env["SSE_DATA_DIR"] = str(tmp_path)
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    return env


async def test_serve_on_the_embedded_database_runs_the_demo_and_says_so_first(tmp_path: Path) -> None:
    lines, demo = await _demo_of(_free_port(), [], _serve_env(tmp_path, None))

    assert demo == {"enabled": True}
    assert lines[0].startswith("sse-batcher: dashboard at")
    assert lines[1].startswith("sse-batcher: demo on: a simulated render farm writes jobs into the embedded database")
    assert "--no-demo" in lines[1]


async def test_serve_with_database_url_runs_the_demo_only_when_asked(dsn: str, tmp_path: Path) -> None:
    lines, demo = await _demo_of(_free_port(), [], _serve_env(tmp_path, dsn))
    assert demo == {"enabled": False}
    assert len(lines) == 1

    lines, demo = await _demo_of(_free_port(), ["--demo"], _serve_env(tmp_path, dsn))
    assert demo == {"enabled": True}
    assert "into your database" in lines[1]
