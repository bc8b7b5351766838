"""Sizing strategies against fixed batching, on a real server, idle and with the CPU kept busy (issues 6, 12).

Run: ``python -m bench.adaptive [--clients 200] [--burst 20000] [--bursts 3] [--strategies ...]``.
For each strategy (default: ``fixed``, i.e. SSE_BATCH_SIZE=10 always, ``adaptive`` and
``learned``; SSE_BATCH_STRATEGY names it), and for each of an idle machine and one with a CPU
burner per core (started and stopped here):

1. start ``python -m server serve --no-demo`` on a free port with a fresh SSE_DATA_DIR (its own
   embedded PostgreSQL), and wait for /healthz;
2. lone events: ``sse-batcher loadtest`` with one client, 4 events/s, one event per request:
   the p50 latency of an event that has nothing to batch with;
3. after a quiet period, bursts of ``--burst`` events at ``--rate`` events/s to ``--clients``
   SSE clients, each burst followed by a quiet period: delivered events/s per client, p50/p99
   latency, and database rows per event (from /api/stats);
4. read /api/stats ``sizing`` (how many changes, and for ``learned`` whether it left its
   fallback to ``adaptive``), then stop the server with SIGINT.

Every subprocess runs under a time limit; a run that misses it is killed and reported as such.
Targets: adaptive >= 1.5x fixed events/s under CPU stress with p99 no worse; adaptive lone p50
<= 50 ms when idle. Figures go in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

START_SECONDS = 120.0
QUIET_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(strategy: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """A server subprocess sizing batches with the named strategy; yields its base URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="sse-adaptive-") as data_dir:
        os.chmod(data_dir, 0o755)  # the embedded PostgreSQL may run as another user
        env = {
            **os.environ,
            "SSE_DATA_DIR": data_dir,
            "SSE_DYNAMIC_BATCHING": "true",
            "SSE_BATCH_STRATEGY": strategy,
            **(extra_env or {}),
            "SSE_BATCH_SIZE": "10",
            "SSE_BATCH_TIMEOUT_SECONDS": "0.5",
        }
        env.pop("DATABASE_URL", None)
        cmd = [
            sys.executable,
            "-m",
            "sse_batcher.server",
            "serve",
            "--no-demo",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        proc = subprocess.Popen(cmd, env=env)
        try:
            _wait_healthy(url, proc)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server not healthy after {START_SECONDS:g} s")


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


@contextmanager
def cpu_burners(on: bool) -> Iterator[None]:
    """One busy process per core while the block runs (none when ``on`` is False)."""
    stop = multiprocessing.Event()
    count = multiprocessing.cpu_count() if on else 0
    procs = [multiprocessing.Process(target=_burn, args=(stop,)) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def loadtest(url: str, *, clients: int, count: int, rate: float, per_request: int, limit: float) -> dict[str, Any]:
    """Run ``sse-batcher loadtest`` once; its JSON result, or ``{"error": ...}``."""
    cmd = [
        sys.executable, "-m", "sse_batcher.server", "loadtest", "--url", url,
        "--clients", str(clients), "--count", str(count),
        "--rate", str(rate), "--batch-per-request", str(per_request), "--json",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {limit:g} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}


def run_case(strategy: str, stressed: bool, args: argparse.Namespace) -> dict[str, Any]:
    with cpu_burners(stressed), server(strategy) as url:
        # Give the sizing policy a few samples of the machine as it is before measuring.
        time.sleep(QUIET_SECONDS)
        lone = loadtest(url, clients=1, count=20, rate=4, per_request=1, limit=60)
        bursts = []
        for _ in range(args.bursts):
            time.sleep(QUIET_SECONDS)
            bursts.append(
                loadtest(url, clients=args.clients, count=args.burst, rate=args.rate, per_request=50, limit=args.limit)
            )
        sizing = httpx.get(f"{url}/api/stats", timeout=10).json()["sizing"]
    ok = [b for b in bursts if "error" not in b]

    def mean(key: str) -> float | None:
        values = [b[key] for b in ok if b.get(key) is not None]
        return statistics.fmean(values) if values else None

    return {
        "mode": strategy,
        "load": "stress" if stressed else "idle",
        "lone_p50_ms": lone.get("latency_p50_ms"),
        "events_per_second_per_client": mean("events_per_second_per_client"),
        "p50_ms": mean("latency_p50_ms"),
        "p99_ms": mean("latency_p99_ms"),
        "db_rows_per_event": mean("db_rows_per_event"),
        "sse_messages_per_event": mean("sse_messages_per_event"),
        "adjustments": sizing.get("adjustments"),
        "phase": sizing.get("strategy_state", {}).get("phase"),
        "delivered_fraction": mean("delivered_fraction"),
        "errors": [b["error"] for b in bursts if "error" in b] + ([lone["error"]] if "error" in lone else []),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (
    f"{'load':7} {'strategy':12} {'ev/s/client':>12} {'p50 ms':>9} {'p99 ms':>9} {'lone p50':>9} "
    f"{'rows/ev':>8} {'msgs/ev':>8} {'changes':>7} phase"
)


def row(r: dict[str, Any]) -> str:
    """One line of the table under :data:`HEADER`."""
    return (
        f"{r['load']:7} {r['mode']:12} {_fmt(r['events_per_second_per_client'], '12.0f')} "
        f"{_fmt(r['p50_ms'], '9.1f')} {_fmt(r['p99_ms'], '9.1f')} {_fmt(r['lone_p50_ms'], '9.1f')} "
        f"{_fmt(r['db_rows_per_event'], '8.4f')} {_fmt(r['sse_messages_per_event'], '8.4f')} "
        f"{r['adjustments'] if r['adjustments'] is not None else '-':>7} {r['phase'] or '-'}"
        + (f"  errors: {r['errors']}" if r["errors"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--burst", type=int, default=20_000, help="events per burst")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20_000.0, help="publish rate within a burst, events/s")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds a burst may take before it is killed")
    parser.add_argument("--strategies", default="fixed,adaptive,learned", help="comma-separated strategy names")
    parser.add_argument("--json", action="store_true", help="also print every result as JSON")
    args = parser.parse_args()
    print(f"{multiprocessing.cpu_count()} cores; {args.clients} clients; {args.bursts} bursts of {args.burst} events")
    print(HEADER)
    results = []
    for stressed in (False, True):
        for strategy in args.strategies.split(","):
            r = run_case(strategy, stressed, args)
            results.append(r)
            print(row(r), flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
