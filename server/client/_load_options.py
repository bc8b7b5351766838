"""What one ``sse-batcher loadtest`` run is asked to do; read by the readers, the publisher and the report alike.

Apart from ``loadtest.py`` so the publisher, which may run in a process of its own, takes the
options without importing the run that starts it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LoadTestOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadTestOptions:
    """What to run: clients, publish rate and amount, and where."""

    url: str = "http://127.0.0.1:8000"
    clients: int = 50
    rate: float = 1000.0
    count: int | None = None
    duration_seconds: float = 10.0
    batch_per_request: int = 50
    token: str | None = None
    json_output: bool = False
    # After publishing stops, how long to wait for every client to have everything.
    settle_seconds: float = 10.0
    progress: bool = True
    publish_path: str = "/api/events"
    stream_path: str = "/events"
    # Put "seq" and "ts" (the moment of the POST) into each event, for a server that assigns none.
    stamp_events: bool = False
    # POST from a process of its own, so a tool whose readers saturate its core still publishes on time.
    publisher_process: bool = False

    @property
    def total(self) -> int:
        return self.count if self.count is not None else max(1, int(self.rate * self.duration_seconds))
