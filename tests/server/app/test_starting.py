"""Starting while the database is away (``server/app/starting.py``): the node waits, says so on /healthz and in
one log line per attempt, serves once the database answers, and gives up after SSE_DB_WAIT_SECONDS with one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import asyncpg
import httpx
import msgspec
import pytest

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.server.app.starting import Phase, RuntimeStarter
from sse_batcher.server.config import StoreSettings
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.server.live import make_config
from tests.server_process import ServerProcess, free_port


def _wait_for_status(url: str, status: int, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} never answered {status}")
        time.sleep(0.1)


def _leftover(directory: Path) -> DeadLetterFile:
    """A dead-letter file holding one batch, as a node killed while its database was away leaves it."""
    leftover = DeadLetterFile(directory)
    payload = msgspec.json.encode({"type": "LEFTOVER", "source": "crashed", "seq": 1, "ts": time.time(), "data": {}})
    leftover.append(
        [
            Message(
                idem_key="leftover-1", type="LEFTOVER", event_type="LEFTOVER", source="crashed", event_count=1,
                first_seq=1, last_seq=1, ts=time.time(), payload=payload,
            )
        ]
    )  # fmt: skip
    return leftover


async def test_a_node_started_while_its_database_is_away_waits_then_serves_once_it_answers(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    dsn = await anyio.to_thread.run_sync(pg.start)
    await anyio.to_thread.run_sync(pg.stop)
    address = dsn.split("@", 1)[1].split("/", 1)[0]
    node = ServerProcess(dsn, tmp_path / "node", demo=False, env={"SSE_DB_WAIT_SECONDS": "120"})
    leftover = _leftover(tmp_path / "node" / "slots" / "slot-0" / "deadletter")
    try:
        node.launch()
        health = await anyio.to_thread.run_sync(_wait_for_status, f"{node.url}healthz", 503)
        assert health.json()["status"] == "unavailable"
        assert address in health.json()["store"]
        async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
            refused = await client.post("/api/events", json={"type": "A", "data": {}})
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert "database" in refused.json()["error"]
            await anyio.to_thread.run_sync(pg.start_again)
            await anyio.to_thread.run_sync(_wait_for_status, f"{node.url}healthz", 200)
            stored = await client.post("/api/events?wait=stored", json={"type": "A", "data": {}})
            assert stored.status_code == 201, stored.text
        # The dead-letter write-back ran once the database answered.
        assert leftover.count_batches() == 0
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM sse_events WHERE type = 'LEFTOVER'") == 1
        finally:
            await conn.close()
        assert node.stop() == 0
    finally:
        node.stop()
        await anyio.to_thread.run_sync(pg.stop)
    attempts = [line for line in node.log.read_text().splitlines() if "next try in" in line]
    assert attempts and all(address in line for line in attempts)
    assert "Traceback" not in node.log.read_text()


def _serve_on(address: str, tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``serve --no-demo`` against PostgreSQL at ``address`` until it exits; its output is kept."""
    env = {
        "DATABASE_URL": f"postgresql://postgres@{address}/postgres",
        "SSE_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        **env,
    }
    args = [sys.executable, "-m", "sse_batcher.server", "serve", "--port", str(free_port()), "--no-demo", *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, cwd=Path.cwd())


@pytest.mark.parametrize("workers", [1, 2])
def test_a_node_whose_database_never_answers_exits_1_after_one_line_per_attempt(tmp_path: Path, workers: int) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = _serve_on(address, tmp_path, {"SSE_DB_WAIT_SECONDS": "1.5"}, "--workers", str(workers))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert 2 <= len(lines) <= 6, done.stderr
    assert all(address in line for line in lines), done.stderr
    assert "SSE_DB_WAIT_SECONDS" in lines[-1]


async def test_stopping_while_an_attempt_hangs_on_a_silent_database_ends_at_once(tmp_path: Path) -> None:
    port = free_port()
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    config = make_config(dsn, tmp_path, db_wait_seconds=60, store=StoreSettings(timeout_seconds=30))
    starter = RuntimeStarter(config, lambda _runtime: None)
    silent = socket.socket()
    try:
        # Without the cancel, the task group would wait out the hanging attempt (the 30 s timeout).
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(starter.run)  # the first attempt was refused: nothing listened yet
                assert starter.phase is Phase.WAITING
                # As behind a partition: connections are taken and never answered.
                silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                silent.bind(("127.0.0.1", port))
                silent.listen(8)
                await anyio.sleep(1.0)  # past the first pause (0.5 s): the next attempt hangs
                starter.stop()
    finally:
        silent.close()
    assert starter.phase is Phase.STOPPED


def test_a_database_that_takes_connections_and_never_answers_is_reported_as_timing_out(tmp_path: Path) -> None:
    # As behind a partition: the port takes connections and never answers, so each attempt times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        done = _serve_on(address, tmp_path, {"SSE_DB_WAIT_SECONDS": "2.5", "SSE_STORE_TIMEOUT_SECONDS": "0.5"})
    finally:
        silent.close()
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert lines and all("no answer before the timeout" in line for line in lines), done.stderr
    assert "CancelledError" not in done.stderr
