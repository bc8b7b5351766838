"""The peer for bench/fanout.py: SSE the way it is usually written, without a batcher.

One ``asyncio.Queue`` per client, one INSERT in its own transaction per event, one SSE message per
event encoded per client by sse-starlette. Same endpoints and wire format as sse-batcher
(``GET /events``, ``POST /api/events``, ``GET /api/stats`` with the counters the load tool reads),
so the same load tool measures both.

Run: ``python -m bench.peer_app --port 8001 --database-url postgresql://...``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["create_peer_app", "main"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_events (
    id bigserial PRIMARY KEY,
    type text NOT NULL,
    source text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
_INSERT = "INSERT INTO peer_events (type, source, data) VALUES ($1, $2, $3::jsonb) RETURNING id"


def create_peer_app(dsn: str) -> Starlette:
    """The plain app: a pool, a set of client queues, and counters, all owned by the lifespan."""
    clients: set[asyncio.Queue[dict[str, Any]]] = set()
    counters = {"rows_written": 0, "events_emitted": 0}
    seqs = itertools.count(1)
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
        await pool.execute(_SCHEMA)
        try:
            yield
        finally:
            await pool.close()

    async def publish(request: Request) -> Response:
        body = json.loads(await request.body())
        events = body if isinstance(body, list) else [body]
        accepted = []
        assert pool is not None
        for event in events:
            seq = next(seqs)
            source = event.get("source") or "app"
            payload = json.dumps(
                {"type": event["type"], "source": source, "seq": seq, "ts": time.time(), "data": event["data"]},
                separators=(",", ":"),
            )
            async with pool.acquire() as conn, conn.transaction():
                row_id = await conn.fetchval(_INSERT, event["type"], source, payload)
            counters["rows_written"] += 1
            counters["events_emitted"] += 1
            for queue in clients:
                queue.put_nowait({"id": str(row_id), "event": event["type"], "data": payload})
            accepted.append(seq)
        return JSONResponse({"accepted": len(accepted), "seqs": accepted}, status_code=202)

    async def events(request: Request) -> Response:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        clients.add(queue)

        async def stream() -> AsyncIterator[dict[str, Any]]:
            try:
                while True:
                    yield await queue.get()
            finally:
                clients.discard(queue)

        return EventSourceResponse(stream(), sep="\n")

    async def stats(request: Request) -> Response:
        return JSONResponse(
            {"store": {"rows_written": counters["rows_written"]}, "batcher": dict(counters), "clients": len(clients)}
        )

    routes = [
        Route("/events", events, methods=["GET"]),
        Route("/api/events", publish, methods=["POST"]),
        Route("/api/stats", stats, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    """Serve the peer app under uvicorn (uvloop and httptools, as sse-batcher runs)."""
    parser = argparse.ArgumentParser(prog="peer_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_peer_app(args.database_url),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
