"""Fan-out benchmark: sse-batcher against its peers, same load tool, same machine, same run.

The peers (``--servers``, any of):

- ``sse-batcher``: this server, on a database of the bench's one embedded PostgreSQL;
- ``peer``: the plain sse-starlette app (bench/peer_app.py: one INSERT and one SSE message per event);
- ``probe``: the no-database Python fan-out probe (bench/probe_app.py: one aggregate per 50 ms
  tick, the same bytes queued to every client), the floor for a Python fan-out;
- ``nchan``: nginx + nchan (bench/nchan.py), C, each POSTed list of events relayed as one message.

For each point, each server runs alone on a free port, driven by ``sse-batcher loadtest`` in its
own process. Per server it prints delivered events/s per client, the delivered fraction, p50/p99
latency, SSE bytes per delivered event and CPU-seconds per million delivered events: of the
server's process tree (nginx's workers included; PostgreSQL not, which gets its own column), and of
the load tool. The machine has 2 cores shared by server, PostgreSQL and load tool, so the CPU
per delivered event says as much as the throughput. Then the ratios sse-batcher / each peer.

Each point is bounded: publishing stops after its duration (x 1.2) plus ``--settle``, and delivery
is waited for at most ``--settle`` more.

Also per server: frames per second (fan-outs: one frame is one bytes object queued to every
subscriber; nchan relays one message per POST) and, for sse-batcher, socket writes per delivered
event (all streams together). ``srv+PG CPU s/M`` is the figure the targets compare: server and
PostgreSQL CPU-seconds per million delivered events.

Workloads (``--workload``, comma-separated):

- ``steady``: 1,000 clients, 500 events/s in requests of 10, 10 s;
- ``burst``: 1,000 clients, bursts of 500 events (one POST) once a second, 10 s;
- ``lone``: 1,000 clients, single events 5 times a second, 10 s;
- ``a``: 1,000 clients, 50,000 events at 25,000/s in requests of 100 (saturation);
- ``b``: 200 clients, 100,000 events at 60,000/s in requests of 250 (saturation).

``--scale`` multiplies the clients of every workload (the machine is 2 shared cores: ``--scale
0.2`` runs 200 clients where a workload names 1,000), and ``--count-scale`` the events.

Run: ``python -m bench.fanout --workload steady,burst,lone --scale 0.2``, ``--workload a``, or
``--clients 1,50,200 --rate 20000 --count 160000``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench._pg import machine
from bench._servers import (
    SERVERS,
    Running,
    loadtest,
    postmaster_pid,
    raise_open_files,
    running,
    tree_cpu_seconds,
    workers_of,
)
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

__all__ = ["WORKLOADS", "Point", "cpu_per_million", "main", "measure"]


@dataclass(frozen=True, slots=True)
class Point:
    """One load: clients, events offered, their rate and how many go in one POST."""

    clients: int
    count: int
    rate: float
    batch_per_request: int

    def describe(self) -> str:
        return f"{self.clients} clients, {self.count:,} events at {self.rate:,.0f}/s, {self.batch_per_request} per POST"


WORKLOADS = {
    "steady": Point(clients=1000, count=5_000, rate=500.0, batch_per_request=10),
    "burst": Point(clients=1000, count=5_000, rate=500.0, batch_per_request=500),
    "lone": Point(clients=1000, count=50, rate=5.0, batch_per_request=1),
    "a": Point(clients=1000, count=50_000, rate=25_000.0, batch_per_request=100),
    "b": Point(clients=200, count=100_000, rate=60_000.0, batch_per_request=250),
}


def _hub(server: Running) -> dict[str, Any]:
    """The server's fan-out counters (sse-batcher and the probe report them; nchan has none)."""
    if server.kind == "nchan":
        return {}
    try:
        hub: dict[str, Any] = httpx.get(server.url + "/api/stats", timeout=10).json().get("hub", {})
    except (httpx.HTTPError, ValueError):
        return {}
    return hub


def measure(
    kind: str, point: Point, pg: EmbeddedPostgres, data_dir: Path, settle: float, asgi: str = "uvicorn"
) -> dict[str, Any]:
    """Run ``point`` against a fresh ``kind`` (sse-batcher under ``asgi``); the load tool's figures plus CPU."""
    uses_db = kind == "peer" or workers_of(kind) is not None
    dsn = pg.create_database("bench_" + kind.replace("-", "_"), replace=True) if uses_db else None
    pg_pid = postmaster_pid(pg.pgdata)
    with running(kind, dsn=dsn, data_dir=data_dir / kind, asgi=asgi) as server:
        hub_before = _hub(server)
        cpu_before = tree_cpu_seconds(server.pid)
        pg_before = tree_cpu_seconds(pg_pid) if pg_pid else 0.0
        result = loadtest(
            server,
            clients=point.clients,
            rate=point.rate,
            count=point.count,
            batch_per_request=point.batch_per_request,
            settle_seconds=settle,
        )
        result["server_cpu_seconds"] = tree_cpu_seconds(server.pid) - cpu_before
        result["pg_cpu_seconds"] = (tree_cpu_seconds(pg_pid) - pg_before) if pg_pid else 0.0
        hub_after = _hub(server)
    # Over the seconds publishing took (the offered duration when the server keeps up).
    seconds = max(result.get("publish_seconds") or point.count / point.rate, 0.1)
    if kind == "nchan":  # one message per POST, relayed as it came
        result["frames_per_second"] = result["accepted"] / point.batch_per_request / seconds
    elif "fanouts" in hub_after:
        result["frames_per_second"] = (hub_after["fanouts"] - hub_before.get("fanouts", 0)) / seconds
    if "writes" in hub_after and result.get("delivered_events"):
        result["writes_per_delivery"] = (hub_after["writes"] - hub_before.get("writes", 0)) / result["delivered_events"]
    return result


def _per_million(seconds: float, delivered: int) -> float | None:
    return seconds / delivered * 1e6 if delivered else None


def cpu_per_million(result: dict[str, Any]) -> float | None:
    """CPU-seconds of server and PostgreSQL per million delivered events."""
    return _per_million(result["server_cpu_seconds"] + result["pg_cpu_seconds"], result.get("delivered_events", 0))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_HEADER = (
    f"{'clients':>7} {'server':<12} {'accepted':>8} {'in s':>5} {'ev/s/client':>11} {'delivered':>9} "
    f"{'p50 ms':>8} {'p99 ms':>8} "
    f"{'B/event':>7} {'srv+PG CPU s/M':>14} {'PG CPU s/M':>10} {'tool CPU s/M':>12} {'frames/s':>8} {'writes/dlv':>10}"
)


def _row(kind: str, r: dict[str, Any]) -> str:
    delivered = int(r.get("delivered_events", 0))
    return (
        f"{r['clients']:>7} {kind:<12} {r['accepted'] / r['published']:>8.3f} {r['publish_seconds']:>5.1f} "
        f"{r['events_per_second_per_client']:>11.0f} {r['delivered_fraction']:>9.4f} "
        f"{_fmt(r['latency_p50_ms'], '.1f'):>8} {_fmt(r['latency_p99_ms'], '.1f'):>8} "
        f"{r.get('sse_bytes_per_event', 0.0):>7.1f} "
        f"{_fmt(cpu_per_million(r), '.2f'):>14} "
        f"{_fmt(_per_million(r['pg_cpu_seconds'], delivered), '.2f'):>10} "
        f"{_fmt(_per_million(r['loadtool_cpu_seconds'], delivered), '.2f'):>12} "
        f"{_fmt(r.get('frames_per_second'), '.1f'):>8} {_fmt(r.get('writes_per_delivery'), '.4f'):>10}"
    )


def _ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    ours = results.get("sse-batcher")
    if ours is None:
        return []
    lines = []
    ours_cpu = cpu_per_million(ours)
    for peer in ("probe", "nchan", "peer"):
        theirs = results.get(peer)
        if theirs is None:
            continue
        rate = theirs["events_per_second_per_client"]
        speed = ours["events_per_second_per_client"] / rate if rate else None
        their_cpu = cpu_per_million(theirs)
        cpu = ours_cpu / their_cpu if ours_cpu and their_cpu else None
        p99s = ours["latency_p99_ms"], theirs["latency_p99_ms"]
        tail = p99s[0] / p99s[1] if p99s[0] is not None and p99s[1] else None
        lines.append(
            f"  sse-batcher / {peer:<6} ev/s per client {_fmt(speed, '.2f')}x, "
            f"CPU per delivered event (server + PG) {_fmt(cpu, '.2f')}x, p99 {_fmt(tail, '.2f')}x"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; exit code 0."""
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__)
    parser.add_argument(
        "--workload", default=None, help=f"comma-separated, any of {','.join(WORKLOADS)} (overrides the below)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload's clients")
    parser.add_argument("--count-scale", type=float, default=1.0, help="multiply every workload's events")
    parser.add_argument("--clients", default="1,50,200,1000", help="comma-separated client counts")
    parser.add_argument("--rate", type=float, default=10_000.0, help="events per second offered")
    parser.add_argument("--count", type=int, default=100_000, help="events offered per point")
    parser.add_argument("--batch-per-request", type=int, default=100)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait for delivery after publishing")
    parser.add_argument(
        "--servers",
        default="sse-batcher,probe,nchan",
        help=f"any of {','.join(SERVERS)}, or sse-batcher-wN for serve --workers N",
    )
    args = parser.parse_args(argv)
    if args.workload:
        names = [n for name in args.workload.split(",") for n in (name if name in ("ab", "ba") else [name])]
        unknown = [name for name in names if name not in WORKLOADS]
        if unknown:
            parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
        points = [
            replace(
                WORKLOADS[name],
                clients=max(1, round(WORKLOADS[name].clients * args.scale)),
                count=max(1, round(WORKLOADS[name].count * args.count_scale)),
            )
            for name in names
        ]
    else:
        points = [Point(int(c), args.count, args.rate, args.batch_per_request) for c in args.clients.split(",")]
    kinds = args.servers.split(",")
    raise_open_files()
    print(f"machine: {machine()}", flush=True)
    tables: list[tuple[Point, dict[str, dict[str, Any]]]] = []
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        data_dir = Path(tmp)
        data_dir.chmod(0o755)
        pg = EmbeddedPostgres(data_dir / "pg")
        pg.start()
        try:
            for point in points:
                results: dict[str, dict[str, Any]] = {}
                for kind in kinds:
                    results[kind] = measure(kind, point, pg, data_dir, args.settle)
                    print(_row(kind, results[kind]), file=sys.stderr, flush=True)
                tables.append((point, results))
        finally:
            pg.stop()
    for point, results in tables:
        print(f"\n{point.describe()}")
        print(_HEADER)
        for kind, result in results.items():
            print(_row(kind, result))
        for line in _ratios(results):
            print(line)
    print(
        "\naccepted: fraction of the offered events the server accepted (202) in time, in s: seconds it took;"
        "\ndelivered: events received / (accepted x clients), above 1 when POSTs still in flight at the"
        "\ndeadline were cancelled (uncounted) but the server had taken them;"
        "\ns/M: CPU-seconds per million delivered events (srv+PG: the server's process tree and PostgreSQL's;"
        " PG: PostgreSQL's alone; tool: the load tool's);"
        "\nframes/s: fan-outs per second of publishing (one bytes object shared by every subscriber);"
        "\nwrites/dlv: socket writes per delivered event, all streams together (sse-batcher only)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
