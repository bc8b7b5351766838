"""Fan-out benchmark: sse-batcher against a plain sse-starlette peer, same load tool, same machine.

Starts one embedded PostgreSQL (a database per server), then for each client count runs each
server as a subprocess on a free port, drives it with ``sse-batcher loadtest`` (its own process),
and prints a table and the ratios. Each point is bounded: ``--duration`` seconds of publishing and
at most ``--settle`` more for delivery.

Run: ``python -m bench.fanout [--clients 1,50,200,1000] [--rate 10000] [--duration 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from server.embedded_pg import EmbeddedPostgres

__all__ = ["free_port", "main", "start_server", "stop_server"]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(kind: str, port: int, dsn: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SSE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    if kind == "sse-batcher":
        command = [sys.executable, "-m", "server", "serve", "--no-demo", "--port", str(port), "--database-url", dsn]
        command += ["--log-level", "warning"]
    else:
        command = [sys.executable, "-m", "bench.peer_app", "--port", str(port), "--database-url", dsn]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/stats", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with {process.returncode} at startup")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} did not start in 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _loadtest(port: int, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "server", "loadtest", "--url", f"http://127.0.0.1:{port}",
        "--clients", str(clients), "--rate", str(args.rate), "--duration", str(args.duration),
        "--batch-per-request", str(args.batch_per_request), "--json",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=args.duration * 3 + 120)
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadtest failed: {result.stderr.decode()[-2000:]}")
    point: dict[str, Any] = json.loads(lines[-1])
    return point


def _row(kind: str, point: dict[str, Any]) -> str:
    rows = point["db_rows_per_event"]
    return (
        f"{point['clients']:>7} {kind:<12} {point['events_per_second_per_client']:>12.0f} "
        f"{point['delivered_fraction']:>9.4f} {point['latency_p50_ms'] or 0:>9.1f} "
        f"{point['latency_p99_ms'] or 0:>9.1f} "
        f"{point['sse_messages_per_event']:>10.4f} {rows if rows is None else round(rows, 4)!s:>9}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; exit code 0."""
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__)
    parser.add_argument("--clients", default="1,50,200,1000", help="comma-separated client counts")
    parser.add_argument("--rate", type=float, default=10_000.0, help="events per second published")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per point")
    parser.add_argument("--batch-per-request", type=int, default=100)
    parser.add_argument("--servers", default="sse-batcher,peer", help="which servers to run")
    parser.add_argument("--data-dir", default=None, help="where the embedded PostgreSQL lives (default: a temp dir)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.clients.split(",")]
    kinds = args.servers.split(",")
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp)
        pg = EmbeddedPostgres(data_dir)
        pg.start()
        results: dict[tuple[str, int], dict[str, Any]] = {}
        try:
            for clients in counts:
                for kind in kinds:
                    dsn = pg.create_database("bench_" + kind.replace("-", "_"), replace=True)
                    port = free_port()
                    process = start_server(kind, port, dsn, data_dir / kind)
                    try:
                        point = _loadtest(port, clients, args)
                    finally:
                        stop_server(process)
                    results[(kind, clients)] = point
                    print(_row(kind, point), file=sys.stderr, flush=True)
        finally:
            pg.stop()
    print(f"rate {args.rate:.0f} events/s for {args.duration:.0f} s, {args.batch_per_request} events per POST")
    print(f"{'clients':>7} {'server':<12} {'ev/s/client':>12} {'delivered':>9} {'p50 ms':>9} {'p99 ms':>9} "
          f"{'msgs/event':>10} {'rows/ev':>9}")  # fmt: skip
    for clients in counts:
        for kind in kinds:
            if (kind, clients) in results:
                print(_row(kind, results[(kind, clients)]))
    if {"sse-batcher", "peer"} <= set(kinds):
        print("\nratio sse-batcher / peer, delivered events/s per client:")
        for clients in counts:
            ours, peer = results.get(("sse-batcher", clients)), results.get(("peer", clients))
            if ours and peer and peer["events_per_second_per_client"]:
                ratio = ours["events_per_second_per_client"] / peer["events_per_second_per_client"]
                print(f"  {clients:>5} clients: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
