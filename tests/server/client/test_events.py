"""server.client.events: unroll gives back the full events that the wire carries compacted."""

from __future__ import annotations

import anyio
import msgspec

from sse_batcher.server.client import unroll
from tests.server.live import LiveServer
from tests.server.sse import publish


async def test_unroll_restores_what_the_raw_stream_compacts(live: LiveServer) -> None:
    async with live.client() as client:
        await publish(client, [{"type": "JOB_STARTED", "source": "s", "data": {"job_id": i}} for i in range(3)])
        async with client.stream("GET", "/events", params={"last_event_id": "0"}) as response:
            with anyio.fail_after(10):
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and line != "data: ":
                        data = line.removeprefix("data: ")
                        break
    body = msgspec.json.decode(data)
    assert body["event_type"] == "JOB_STARTED" and all(set(e) == {"seq", "ts", "data"} for e in body["events"])
    assert [(e["type"], e["source"], e["data"]) for e in unroll(data)] == [
        ("JOB_STARTED", "s", {"job_id": i}) for i in range(3)
    ]
