"""The cluster under test: one embedded PostgreSQL, one proxy and one ``sse-batcher serve`` per node.

Each node runs in a session of its own and is known by name (``n1``...). The campaign drives it
only from outside: signals to its whole process tree, its proxy, its data directory. A watcher
notices a node whose process exited when nobody stopped it, records it with the tail of its log,
and starts it again a second later, as a supervisor (systemd, Kubernetes) would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench._servers import ROOT, free_port
from bench.chaos.history import History, Kill, MemorySample, NodeExit
from bench.chaos.proxy import ChaosProxy, unix_socket_of
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

__all__ = ["COALESCED_TYPE", "Cluster", "Node", "cluster"]

logger = logging.getLogger(__name__)

COALESCED_TYPE = "PROGRESS"
_RULES = f'[types.{COALESCED_TYPE}]\ncoalesce = "key"\n'
_DATABASE = "chaos"
# Short timeouts, so each fault plays out within seconds rather than minutes.
_NODE_ENV = {
    "SSE_BATCH_TIMEOUT_SECONDS": "0.2",
    "SSE_STORE_TIMEOUT_SECONDS": "2",
    "SSE_PUBLISH_WAIT_TIMEOUT_SECONDS": "5",
    "SSE_SHUTDOWN_TIMEOUT_SECONDS": "5",
    "SSE_PING_SECONDS": "2",
    "SSE_BREAKER_RESET_SECONDS": "2",
}
_STOP_SECONDS = 30.0


@dataclass(slots=True, kw_only=True)
class Node:
    """One ``sse-batcher serve`` on a fixed port behind its own proxy; started again at will."""

    name: str
    port: int
    data_dir: Path
    proxy: ChaosProxy
    env: dict[str, str]
    workers: int = 1
    ab: bool = False
    process: subprocess.Popen[bytes] | None = None
    run: int = 0
    down: bool = True  # stopped on purpose: the watcher leaves it alone
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir / "node.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (not waiting for it to be healthy)."""
        env = {**self.env, "SSE_NODE_ID": self.name}
        if self.ab:
            env["SSE_BATCH_STRATEGY_B"] = "fixed"
        args = [sys.executable, "-m", "sse_batcher.server", "serve", "--no-demo", "--port", str(self.port)]
        args += ["--workers", str(self.workers), "--log-level", "warning"]
        with self.log.open("ab") as log:
            banner = f"--- {time.strftime('%H:%M:%S')} run {self.run + 1}: {self.workers} workers, ab {self.ab}\n"
            log.write(banner.encode())
            log.flush()
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.run += 1
        self.down = False

    def tree(self) -> list[psutil.Process]:
        """The node's processes, children first."""
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [*root.children(recursive=True), root]
        except psutil.Error:
            return []

    def signal_tree(self, signum: int) -> None:
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)

    async def kill(self, history: History) -> None:
        """SIGKILL every process of the node at once: no flush, no dead-letter write."""
        self.down = True
        self.signal_tree(signal.SIGKILL)
        history.kills.append(Kill(node=self.name, at=time.time()))
        await self._reap()

    async def stop(self) -> None:
        """SIGTERM (the graceful drain); SIGKILL whatever outlives ``_STOP_SECONDS``."""
        self.down = True
        if self.process is None:
            return
        self.signal_tree(signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, _STOP_SECONDS)
        self.signal_tree(signal.SIGKILL)
        await self._reap()

    async def _reap(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        await asyncio.to_thread(process.wait)

    async def healthy(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get(f"{self.url}/healthz", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def deadletter_files(self) -> list[Path]:
        """Every dead-letter file under the node's data directory (each slot, each A/B arm)."""
        return sorted(self.data_dir.glob("slots/**/deadletter.jsonl"))


@dataclass(slots=True, kw_only=True)
class Cluster:
    """PostgreSQL, the nodes and their proxies, and the history the watcher adds to."""

    pg: EmbeddedPostgres
    dsn: str
    nodes: list[Node]
    history: History
    http: httpx.AsyncClient

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    async def wait_healthy(self, nodes: list[Node] | None = None, timeout: float = 60.0) -> bool:
        """Wait until every node (of ``nodes``) answers /healthz 200; False on timeout."""
        deadline = time.monotonic() + timeout
        for node in nodes or self.nodes:
            while not await node.healthy(self.http):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.2)
        return True

    async def watch(self) -> None:
        """Record unplanned exits (and restart the node) and memory, until cancelled."""
        last_sample = 0.0
        while True:
            await asyncio.sleep(0.25)
            now = time.time()
            for node in self.nodes:
                process = node.process
                if node.down or process is None or process.poll() is None:
                    continue
                self.history.exits.append(
                    NodeExit(node=node.name, at=now, returncode=process.returncode, log_tail=node.log_tail())
                )
                logger.warning("%s exited unasked (%s); starting it again", node.name, process.returncode)
                node.process = None
                await asyncio.sleep(1.0)
                if not node.down:
                    node.start()
            if now - last_sample >= 2.0:
                last_sample = now
                for node in self.nodes:
                    rss = 0
                    tree = node.tree()
                    for process in tree:
                        with contextlib.suppress(psutil.Error):
                            rss += process.memory_info().rss
                    if rss and not node.down:
                        sample = MemorySample(node=node.name, run=node.run, at=now, rss_bytes=rss, processes=len(tree))
                        self.history.memory.append(sample)


@asynccontextmanager
async def cluster(history: History, *, nodes: int = 3, root: Path | None = None) -> AsyncIterator[Cluster]:
    """Start PostgreSQL, ``nodes`` proxies and nodes; stop all of it on the way out, whatever happened."""
    owned = root is None
    root = root or Path(tempfile.mkdtemp(prefix="sse-chaos-"))
    os.chmod(root, 0o755)  # the embedded PostgreSQL runs as another user
    pg = EmbeddedPostgres(root / "pg")
    started: list[Node] = []
    proxies: list[ChaosProxy] = []
    try:
        await asyncio.to_thread(pg.start)
        dsn = await asyncio.to_thread(pg.create_database, _DATABASE)
        rules = root / "rules.toml"
        rules.write_text(_RULES)
        async with httpx.AsyncClient() as http:
            members: list[Node] = []
            for index in range(1, nodes + 1):
                proxy = ChaosProxy(unix_socket_of(dsn))
                proxies.append(proxy)
                port = await proxy.start()
                data_dir = root / f"n{index}"
                data_dir.mkdir()
                env = {**os.environ, **_NODE_ENV, "PYTHONPATH": str(ROOT), "SSE_RULES_FILE": str(rules)}
                env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{port}/{_DATABASE}?sslmode=disable"
                env["SSE_DATA_DIR"] = str(data_dir)
                members.append(Node(name=f"n{index}", port=free_port(), data_dir=data_dir, proxy=proxy, env=env))
            the_cluster = Cluster(pg=pg, dsn=dsn, nodes=members, history=history, http=http)
            for node in members:
                node.start()
                started.append(node)
            if not await the_cluster.wait_healthy(timeout=90):
                raise RuntimeError("the cluster did not become healthy: " + members[0].log_tail())
            yield the_cluster
    finally:
        for node in started:
            node.signal_tree(signal.SIGCONT)
        for proxy in proxies:
            proxy.heal()
        await asyncio.gather(*(node.stop() for node in started), return_exceptions=True)
        for proxy in proxies:
            await proxy.aclose()
        await asyncio.to_thread(pg.stop)
        if owned:
            shutil.rmtree(root, ignore_errors=True)
