"""A TCP proxy between one node and PostgreSQL that the campaign can delay, cut or partition.

The faults a network gives a database client, each at the byte level, without touching the node:

- ``delay(s)``: every chunk waits ``s`` seconds before it is forwarded (a slow link);
- ``cut()``: every open connection is closed at once, both sides (a reset); new ones work;
- ``refuse()``: every open connection is cut and new ones are closed at once (the database is
  down and the host says so), so a client's every attempt fails fast;
- ``partition()``: bytes stop in both directions and nothing is closed, as behind a dead switch.
  Connections made meanwhile are accepted but get no answer. ``heal()`` lets the held bytes flow
  again, so a client that gave up on a connection notices only through its own timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

__all__ = ["ChaosProxy", "unix_socket_of"]

_CHUNK = 65536


@dataclass(slots=True, eq=False)
class _Pipe:
    """One client connection and its upstream, so a cut can close both."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def unix_socket_of(dsn: str) -> str:
    """The unix socket path a ``postgresql://...?host=/dir`` dsn names (port 5432 unless given)."""
    parts = urlsplit(dsn)
    host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    if not host.startswith("/"):
        raise ValueError(f"{dsn} names no unix socket directory")
    return f"{host}/.s.PGSQL.{parts.port or 5432}"


class ChaosProxy:
    """Listen on ``127.0.0.1:<port>`` and forward to the unix socket ``target`` until told otherwise.

    The embedded PostgreSQL listens on a unix socket only; the nodes reach it over TCP through here.

    Runs on the caller's event loop; ``start()`` binds, ``aclose()`` closes everything and can be
    called twice.
    """

    def __init__(self, target: str) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._delay_seconds = 0.0
        self._refusing = False
        self.port = 0

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> int:
        """Bind a free port and return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it (0: no delay)."""
        self._delay_seconds = seconds

    def partition(self) -> None:
        """Stop every byte, both ways, and close nothing."""
        self._flowing.clear()

    def refuse(self) -> int:
        """Cut every connection and close each new one at once, until ``heal()``; return how many were cut."""
        self._refusing = True
        return self.cut()

    def heal(self) -> None:
        """Undo a partition, a refusal and a delay: held bytes flow again."""
        self._delay_seconds = 0.0
        self._refusing = False
        self._flowing.set()

    def cut(self) -> int:
        """Close every open connection (client side and upstream); return how many."""
        pipes = list(self._pipes)
        for pipe in pipes:
            self._close(pipe)
        return len(pipes)

    async def aclose(self) -> None:
        """Stop listening and close every connection."""
        self.heal()
        if self._server is not None:
            self._server.close()
            self._server = None
        for pipe in list(self._pipes):
            self._close(pipe)
            for task in pipe.tasks:
                task.cancel()
            for task in pipe.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _close(self, pipe: _Pipe) -> None:
        self._pipes.discard(pipe)
        for writer in (pipe.client, pipe.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pipe = _Pipe(writer)
        if self._refusing:
            writer.transport.abort()
            return
        self._pipes.add(pipe)
        try:
            await self._flowing.wait()  # a partitioned proxy accepts and then says nothing
            up_reader, up_writer = await asyncio.open_unix_connection(self._target)
        except (OSError, asyncio.CancelledError):
            self._close(pipe)
            return
        if pipe not in self._pipes:  # cut while connecting
            up_writer.transport.abort()
            return
        pipe.upstream = up_writer
        pipe.tasks = [
            asyncio.create_task(self._forward(reader, up_writer, pipe)),
            asyncio.create_task(self._forward(up_reader, writer, pipe)),
        ]
        await asyncio.gather(*pipe.tasks, return_exceptions=True)
        self._close(pipe)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipe: _Pipe) -> None:
        try:
            while pipe in self._pipes:
                chunk = await reader.read(_CHUNK)
                if not chunk:
                    break
                await self._flowing.wait()
                if self._delay_seconds:
                    await asyncio.sleep(self._delay_seconds)
                    await self._flowing.wait()
                if pipe not in self._pipes:
                    break
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close(pipe)
