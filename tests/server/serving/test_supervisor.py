"""``sse-batcher serve --workers 2`` as real processes on one port and one real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import msgspec
import psutil
import pytest
from anyio.abc import Process

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log import DeadLetterFile
from sse_batcher.server.client import unroll
from sse_batcher.server.serving.supervisor import restart_delay
from tests.server.sse import Received, events_of, read_until
from tests.server_process import free_port

ROOT = Path(__file__).resolve().parents[3]
HOST = socket.gethostname()


@dataclass
class Workers:
    process: Process
    url: str
    line: str

    def worker_pids(self) -> set[int]:
        """The server processes the parent runs (not multiprocessing's resource tracker)."""
        children = psutil.Process(self.process.pid).children()
        return {c.pid for c in children if _is_worker(c)}

    def client(self) -> httpx.AsyncClient:
        """A client of its own: its first request opens a new connection, to whichever worker accepts it."""
        return httpx.AsyncClient(base_url=self.url, timeout=10)


def _is_worker(process: psutil.Process) -> bool:
    try:
        return any("spawn_main" in part for part in process.cmdline())
    except psutil.NoSuchProcess:
        return False


def _running(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie does not (it has exited, and its parent has yet to reap it)."""
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def _postmaster(data_dir: Path) -> tuple[Path, int]:
    """The embedded cluster's directory and its postmaster's pid."""
    pgdata = (data_dir / "pgdata").resolve()
    return pgdata, int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def _env(tmp_path: Path, dsn: str | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SSE_DATA_DIR": str(tmp_path),
        "SSE_NODE_HEARTBEAT_SECONDS": "0.2",
        "SSE_SHUTDOWN_TIMEOUT_SECONDS": "10",
        "SSE_BATCH_TIMEOUT_SECONDS": "0.05",
        "SSE_PING_SECONDS": "2",
        **extra,
    }
    for name in ("SSE_PUBLISH_TOKEN", "SSE_SUBSCRIBE_TOKEN", "SSE_NODE_ID", "SSE_WORKERS", "DATABASE_URL"):
        env.pop(name, None)
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    return env


@asynccontextmanager
async def serving_workers(env: dict[str, str], workers: int = 2, *, demo: bool = False) -> AsyncIterator[Workers]:
    """``serve --workers N`` until the block ends; SIGTERM then, unless the test stopped it itself."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sse_batcher.server",
        "serve",
        "--demo" if demo else "--no-demo",
        "--workers",
        str(workers),
        "--port",
        str(port),
    ]
    async with await anyio.open_process(command, cwd=ROOT, env=env, stderr=None) as process:
        try:
            line = await _startup_line(process)
            yield Workers(process, f"http://127.0.0.1:{port}", line)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def _startup_line(process: Process) -> str:
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(60):
        async for chunk in process.stdout:
            buffer += chunk
            if b"\n" in buffer:
                return buffer.split(b"\n", 1)[0].decode()
    raise AssertionError(f"the supervisor exited before printing its startup line: {buffer!r}")


async def _until(condition: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll an async ``condition`` (a figure in another process) until it returns something truthy."""
    with anyio.fail_after(timeout):
        while not (result := await condition()):  # noqa: ASYNC110 - another process's figure, bounded by fail_after
            await anyio.sleep(0.05)
        return result


async def _live_nodes(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT node_id, pid, events_in, clients FROM sse_nodes"
            " WHERE heartbeat_at > now() - interval '1 second' ORDER BY node_id"
        )
        return rows
    finally:
        await conn.close()


async def _stored_payloads(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT data::text AS data FROM sse_events ORDER BY id")
    finally:
        await conn.close()
    events: list[dict[str, Any]] = []
    for row in rows:
        events.extend(unroll(row["data"].encode()))
    return events


async def _publish_on_a_new_connection(workers: Workers, marker: str, *, wait_stored: bool = False) -> str:
    """Publish one marked event on a fresh connection; return the id of the node that took it."""
    async with workers.client() as client:
        params = {"wait": "stored"} if wait_stored else None
        response = await client.post(
            "/api/events", params=params, json={"type": "MARK", "source": "test", "data": {"marker": marker}}
        )
        assert response.status_code in (201, 202), response.text
        # Same connection, so the same worker: which node accepted the event.
        node: str = (await client.get("/api/stats")).json()["node"]["id"]
        return node


async def test_two_workers_share_one_port_and_each_heartbeats_as_a_node_of_its_own(dsn: str, tmp_path: Path) -> None:
    async with serving_workers(_env(tmp_path, dsn)) as workers:
        assert workers.line.endswith("  workers: 2")
        rows = await _until(lambda: _two_live(dsn))
        assert {row["node_id"] for row in rows} == {f"{HOST}-0", f"{HOST}-1"}
        assert {row["pid"] for row in rows} == workers.worker_pids()
        # Requests are served, by both processes, on the one port.
        nodes: set[str] = set()
        with anyio.fail_after(30):
            while len(nodes) < 2:
                nodes.add(await _publish_on_a_new_connection(workers, uuid.uuid4().hex))
        # /api/stats lists the nodes as of the answering node's last heartbeat: a fresh one may
        # not have seen the other yet, so ask until it has (bounded).
        alive: set[int] = set()
        with anyio.fail_after(30):
            while alive != workers.worker_pids():
                async with workers.client() as client:
                    stats = (await client.get("/api/stats")).json()
                alive = {n["pid"] for n in stats["nodes"] if n["alive"]}
                if alive != workers.worker_pids():
                    await anyio.sleep(0.2)


async def _node_and_mint(workers: Workers) -> tuple[str, str]:
    """Mint a stream token on a fresh connection; the node that signed it, and the token."""
    async with workers.client() as client:
        node: str = (await client.get("/api/stats")).json()["node"]["id"]
        response = await client.post("/api/stream-token", json={}, headers={"Authorization": "Bearer pub"})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return node, token


async def _node_and_open(workers: Workers, token: str) -> tuple[str, int]:
    """Open a stream with ``token`` on a fresh connection; the node asked, and its status."""
    async with workers.client() as client:
        node: str = (await client.get("/api/stats")).json()["node"]["id"]
        async with client.stream("GET", "/events", params={"token": token}) as stream:
            return node, stream.status_code


async def test_a_stream_token_minted_by_one_worker_opens_a_stream_on_the_other(dsn: str, tmp_path: Path) -> None:
    # No SSE_STREAM_TOKEN_SECRET: the supervisor draws one key for all its workers.
    env = {**_env(tmp_path, dsn), "SSE_PUBLISH_TOKEN": "pub"}
    env.pop("SSE_STREAM_TOKEN_SECRET", None)
    async with serving_workers(env) as workers:
        await _until(lambda: _two_live(dsn))
        crossed, statuses = 0, []
        with anyio.fail_after(60):
            while crossed < 3:
                minted_by, token = await _node_and_mint(workers)
                opened_by, status = await _node_and_open(workers, token)
                statuses.append(status)
                crossed += minted_by != opened_by
    assert set(statuses) == {200}, statuses


async def test_the_publish_rate_limit_holds_for_the_whole_server_not_per_worker(dsn: str, tmp_path: Path) -> None:
    # One token per 100 s and a burst of 4: nothing refills during the test.
    env = _env(tmp_path, dsn, SSE_PUBLISH_RATE_LIMIT="0.01", SSE_PUBLISH_RATE_BURST="4")
    async with serving_workers(env) as workers:
        await _until(lambda: _two_live(dsn))
        statuses: list[int] = []
        for i in range(24):  # each on a fresh connection, to whichever worker accepts it
            async with workers.client() as client:
                event = {"type": "MARK", "source": "test", "data": {"i": i}}
                statuses.append((await client.post("/api/events", json=event)).status_code)
    assert set(statuses) == {202, 429}
    assert statuses.count(202) <= 4, statuses


async def test_the_streams_per_address_cap_holds_for_the_whole_server_not_per_worker(dsn: str, tmp_path: Path) -> None:
    env = _env(tmp_path, dsn, SSE_MAX_CLIENTS_PER_IP="2")
    async with serving_workers(env) as workers, contextlib.AsyncExitStack() as held:
        await _until(lambda: _two_live(dsn))
        statuses: list[int] = []
        for _ in range(12):  # each on a connection of its own, held open
            client = await held.enter_async_context(workers.client())
            stream = await held.enter_async_context(client.stream("GET", "/events"))
            statuses.append(stream.status_code)
    assert set(statuses) == {200, 429}
    assert statuses.count(200) <= 2, statuses


async def _two_live(dsn: str) -> list[asyncpg.Record] | None:
    rows = await _live_nodes(dsn)
    return rows if len(rows) == 2 else None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_drains_both_workers_then_exits_0_leaving_no_process(
    dsn: str, tmp_path: Path, signum: signal.Signals
) -> None:
    # Nothing flushes on its own: only each worker's shutdown flush stores what it accepted.
    env = _env(
        tmp_path,
        dsn,
        SSE_BATCH_SIZE="5000",
        SSE_BATCH_TIMEOUT_SECONDS="60",
        SSE_DYNAMIC_BATCHING="false",
        SSE_BATCH_LEADING_EDGE="false",
    )
    async with serving_workers(env) as workers:
        await _until(lambda: _two_live(dsn))
        pids = workers.worker_pids()
        accepted: list[str] = []
        nodes: set[str] = set()
        with anyio.fail_after(30):
            while len(nodes) < 2 or len(accepted) < 10:
                marker = uuid.uuid4().hex
                nodes.add(await _publish_on_a_new_connection(workers, marker))
                accepted.append(marker)
        assert not [e for e in await _stored_payloads(dsn) if e["type"] == "MARK"]
        workers.process.send_signal(signum)
        with anyio.fail_after(30):
            returncode = await workers.process.wait()
    assert returncode == 0
    stored = [e["data"]["marker"] for e in await _stored_payloads(dsn) if e["type"] == "MARK"]
    assert sorted(stored) == sorted(accepted)
    assert not [pid for pid in pids if _running(pid)]


async def test_the_parent_starts_postgresql_once_and_stops_it_last(tmp_path: Path) -> None:
    async with serving_workers(_env(tmp_path, None)) as workers:
        pgdata, postmaster = _postmaster(tmp_path)
        assert f"database: embedded PostgreSQL at {pgdata}" in workers.line

        async def two_alive() -> set[int] | None:
            async with workers.client() as client:
                nodes = (await client.get("/api/stats")).json()["nodes"]
            pids = {n["pid"] for n in nodes if n["alive"]}
            return pids if len(pids) == 2 else None

        assert await _until(two_alive) == workers.worker_pids()
        # The workers, and whatever else the parent started (multiprocessing's resource tracker).
        children = [c.pid for c in psutil.Process(workers.process.pid).children(recursive=True)]
        everything = [workers.process.pid, *children, postmaster]
        workers.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            returncode = await workers.process.wait()
    assert returncode == 0

    async def none_left() -> bool:
        return not [pid for pid in everything if _running(pid)]

    # The resource tracker ends when it reads the end of its pipe from the parent: just after it.
    await _until(none_left, timeout=10)


async def test_a_killed_worker_is_restarted_while_the_other_keeps_serving(dsn: str, tmp_path: Path) -> None:
    async with serving_workers(_env(tmp_path, dsn)) as workers:
        await _until(lambda: _two_live(dsn))
        victim, survivor = sorted(workers.worker_pids())
        os.kill(victim, signal.SIGKILL)
        with anyio.fail_after(10):
            while _running(victim):  # noqa: ASYNC110 - another process, bounded by fail_after
                await anyio.sleep(0.02)
        answers: list[int] = []
        with anyio.fail_after(60):
            while len(pids := workers.worker_pids() - {victim}) < 2:
                # Each on a new connection: whichever worker is alive accepts it.
                async with workers.client() as client:
                    answers.append((await client.get("/healthz")).status_code)
        assert survivor in pids
        assert answers and set(answers) == {200}
        (replacement,) = pids - {survivor}

        async def replacement_heartbeats() -> bool:
            return replacement in {row["pid"] for row in await _live_nodes(dsn)}

        await _until(replacement_heartbeats)
        # It took the dead worker's slot back, so its name and its dead-letter file too.
        assert [row["node_id"] for row in await _live_nodes(dsn)] == [f"{HOST}-0", f"{HOST}-1"]


async def test_workers_stop_themselves_when_the_parent_is_killed(dsn: str, tmp_path: Path) -> None:
    async with serving_workers(_env(tmp_path, dsn)) as workers:
        await _until(lambda: _two_live(dsn))
        pids = workers.worker_pids()
        workers.process.kill()
        await workers.process.wait()

        async def all_exited() -> bool:
            return not [pid for pid in pids if _running(pid)]

        await _until(all_exited, timeout=30)


async def test_a_dead_letter_file_left_in_a_slot_is_written_back_by_the_next_process_to_take_it(
    dsn: str, tmp_path: Path
) -> None:
    leftover = DeadLetterFile(tmp_path / "slots" / "slot-1" / "deadletter")
    payload = msgspec.json.encode({"type": "LEFTOVER", "source": "crashed", "seq": 1, "ts": time.time(), "data": {}})
    message = Message(
        idem_key=f"leftover-{uuid.uuid4().hex}",
        type="LEFTOVER",
        event_type="LEFTOVER",
        source="crashed",
        event_count=1,
        first_seq=1,
        last_seq=1,
        ts=time.time(),
        payload=payload,
    )
    leftover.append([message])
    async with serving_workers(_env(tmp_path, dsn)) as workers:
        await _until(lambda: _two_live(dsn))

        async def written_back() -> bool:
            stored = await _stored_payloads(dsn)
            return any(e["type"] == "LEFTOVER" for e in stored) and leftover.count_batches() == 0

        await _until(written_back)
        assert workers.worker_pids()
    assert [e["source"] for e in await _stored_payloads(dsn) if e["type"] == "LEFTOVER"] == ["crashed"]


async def test_every_subscriber_on_either_node_sees_every_event_published_to_either_node(
    dsn: str, tmp_path: Path
) -> None:
    """Each node streams every node's commits: its log follower reads them all back from PostgreSQL."""
    async with serving_workers(_env(tmp_path, dsn)) as workers, anyio.create_task_group() as tg:
        await _until(lambda: _two_live(dsn))
        subscribers: list[Received] = []
        clients: list[httpx.AsyncClient] = []

        async def subscribe() -> None:
            client = workers.client()
            clients.append(client)
            received = Received()
            subscribers.append(received)
            tg.start_soon(lambda: read_until(client, received))
            await received.connected.wait()

        async def both_nodes_stream() -> bool:
            rows = await _live_nodes(dsn)
            return len(rows) == 2 and all(row["clients"] >= 1 for row in rows)

        # Subscribe on new connections until each node streams to at least one of them.
        with anyio.fail_after(30):
            await subscribe()
            while not await both_nodes_stream():
                if len(subscribers) < 40:
                    await subscribe()
                await anyio.sleep(0.3)  # a heartbeat (0.2 s) reports the new stream
        markers: list[str] = []
        nodes: set[str] = set()
        with anyio.fail_after(30):
            while len(nodes) < 2 or len(markers) < 10:
                marker = uuid.uuid4().hex
                nodes.add(await _publish_on_a_new_connection(workers, marker, wait_stored=True))
                markers.append(marker)

        def seen(received: Received) -> set[str]:
            return {e["data"]["marker"] for e in events_of(received.messages) if e["type"] == "MARK"}

        try:
            # One deadline for them all: every subscriber's stream runs at the same time.
            deadline = anyio.current_time() + 15
            for received in subscribers:
                with contextlib.suppress(TimeoutError):
                    left = max(0.1, deadline - anyio.current_time())
                    await received.wait_for(lambda r: set(markers) <= seen(r), timeout=left)
        finally:
            tg.cancel_scope.cancel()
            for client in clients:
                await client.aclose()
    missing = [len(set(markers) - seen(received)) for received in subscribers]
    assert not any(missing), f"events each subscriber missed, of {len(markers)} published on two nodes: {missing}"


async def test_a_port_in_use_fails_the_command_with_exit_1_and_a_clear_message(dsn: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "sse_batcher.server", "serve", "--no-demo", "--workers", "2", "--port", port]
        with anyio.fail_after(60):
            done = await anyio.run_process(command, cwd=ROOT, env=_env(tmp_path, dsn), check=False)
    assert done.returncode == 1
    assert b"Address already in use" in done.stderr
    assert done.stdout == b""


def test_a_worker_that_keeps_dying_is_restarted_ever_more_slowly_up_to_30_seconds() -> None:
    delays = [restart_delay(failures) for failures in range(1, 10)]
    assert delays[0] == 0.5
    assert all(later == min(30.0, 2 * earlier) for earlier, later in zip(delays, delays[1:], strict=False))
    assert delays[-1] == 30.0
    # A worker that had run a while before it died starts over from the shortest delay.
    assert restart_delay(0) == 0.5


async def test_with_workers_every_worker_runs_the_demo_and_takes_a_burst(dsn: str, tmp_path: Path) -> None:
    env = _env(tmp_path, dsn)
    async with serving_workers(env, workers=2, demo=True) as served:
        answered_by: set[int] = set()
        with anyio.fail_after(60):
            while len(answered_by) < 2:
                # A new connection each time, so the kernel spreads the requests over both workers.
                async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
                    stats = (await client.get("/api/stats")).json()
                    assert stats["demo"] == {"enabled": True}, stats["node"]
                    answer = await client.post("/api/demo/burst", json={"count": 3})
                    assert answer.status_code == 202, answer.text
                    answered_by.add(stats["node"]["pid"])
