"""Every named sizing strategy on the recorded workload and on a live server, side by side.

Run: ``python -m bench.strategies [--no-live] [--stress] [--clients 100] [--burst 10000] [--bursts 2]``.

1. Recorded: the model of ``bench/simulate_sizing.py`` (a single flush loop with measured write
   and aggregation costs and an assumed fan-out cost) replays ``bench/data/load_trace.json`` under
   each strategy: a quiet machine, the recorded one, and the recorded one with a CPU burner per
   core. Every client gets every event in the model, so events/s per client is the burst rate,
   and one SSE message per stored row, so messages per event equal rows per event.
2. Live: for each strategy, ``bench.adaptive``'s case: a real server (its own embedded PostgreSQL)
   with SSE_BATCH_STRATEGY set, lone events, then ``--bursts`` bursts of ``--burst`` events to
   ``--clients`` SSE clients, on an idle machine (and with a burner per core with ``--stress``).

3. Live A/B (``--ab adaptive,learned``): one server with SSE_BATCH_STRATEGY and
   SSE_BATCH_STRATEGY_B, fed for ``--ab-seconds`` at ``--ab-rate`` events/s from ``--ab-sources``
   sources (the load tool publishes from one source, which would fill one arm only), then
   /api/stats ``ab``: each arm's events, rows per event, and the age of its events at commit.

Cases run one after another (the machine is shared): compare only figures of the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from typing import Any

import httpx

from sse_batcher.batcher.config import STRATEGY_NAMES

from . import adaptive
from .simulate_sizing import TRACE, cpu_series, simulate, strategy_policy


def recorded() -> list[dict[str, Any]]:
    """Each strategy in the model, under each recorded load."""
    scenarios = [
        ("idle", lambda t: 5.0),
        ("rec", cpu_series(TRACE, stressed=False)),
        ("stress", cpu_series(TRACE, stressed=True)),
    ]
    results = []
    for label, cpu in scenarios:
        for name in STRATEGY_NAMES:
            r = simulate(strategy_policy(name), cpu)
            quiet = simulate(strategy_policy(name), cpu, bursts=False)
            results.append(
                {
                    "load": label,
                    "strategy": name,
                    "events_per_second_per_client": r.burst_events_per_second,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "lone_p50_ms": quiet.lone_p50_ms,
                    "rows_per_event": r.rows_per_event,
                    "messages_per_event": r.rows_per_event,
                    "cpu_us_per_event": r.cpu_us_per_event,
                    "changes": r.adjustments,
                }
            )
    return results


def live_ab(strategies: str, *, seconds: float, rate: float, sources: int) -> list[dict[str, Any]]:
    """Run a live A/B of the two named strategies; each arm's figures from /api/stats ``ab``."""
    first, second = strategies.split(",")
    names = [f"bench-{i}" for i in range(sources)]
    per_post = max(1, int(rate / 50))  # 50 posts a second
    with adaptive.server(first, {"SSE_BATCH_STRATEGY_B": second}) as url, httpx.Client(timeout=30) as client:
        time.sleep(adaptive.QUIET_SECONDS)  # a few load samples before the first event
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            body = [
                {"type": "AB_TEST", "data": {"i": sent + k}, "source": names[(sent + k) % sources]}
                for k in range(per_post)
            ]
            client.post(f"{url}/api/events", json=body).raise_for_status()
            sent += per_post
            ahead = sent / rate - elapsed
            if ahead > 0:
                time.sleep(ahead)
        time.sleep(2.0)  # let the last batches commit
        arms: list[dict[str, Any]] = client.get(f"{url}/api/stats").json()["ab"]["arms"]
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-live", dest="live", action="store_false", help="only the recorded workload")
    parser.add_argument("--stress", action="store_true", help="also run the live cases with a burner per core")
    parser.add_argument("--strategies", default=",".join(STRATEGY_NAMES), help="live: comma-separated names")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--burst", type=int, default=10_000, help="events per burst")
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20_000.0, help="publish rate within a burst, events/s")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds a burst may take before it is killed")
    parser.add_argument("--ab", help="also run a live A/B of two strategies, e.g. adaptive,learned")
    parser.add_argument("--ab-seconds", type=float, default=60.0)
    parser.add_argument("--ab-rate", type=float, default=2000.0, help="events/s published during the A/B")
    parser.add_argument("--ab-sources", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="also print every result as JSON")
    args = parser.parse_args()

    print("recorded workload (bench/data/load_trace.json, model of bench/simulate_sizing.py)")
    print(
        f"{'load':7} {'strategy':12} {'ev/s/client':>12} {'p50 ms':>10} {'p99 ms':>10} {'lone p50':>9} "
        f"{'rows/ev':>8} {'msgs/ev':>8} {'cpu us/ev':>9} {'changes':>7}"
    )
    model = recorded()
    for r in model:
        print(
            f"{r['load']:7} {r['strategy']:12} {r['events_per_second_per_client']:12.0f} {r['p50_ms']:10.1f} "
            f"{r['p99_ms']:10.1f} {r['lone_p50_ms']:9.1f} {r['rows_per_event']:8.4f} "
            f"{r['messages_per_event']:8.4f} {r['cpu_us_per_event']:9.2f} {r['changes']:7d}",
            flush=True,
        )
    live = []
    if args.live:
        cores = multiprocessing.cpu_count()
        print(f"\nlive server: {cores} cores; {args.clients} clients; {args.bursts} bursts of {args.burst} events")
        print(adaptive.HEADER)
        for stressed in (False, True) if args.stress else (False,):
            for name in args.strategies.split(","):
                r = adaptive.run_case(name, stressed, args)
                live.append(r)
                print(adaptive.row(r), flush=True)
    ab: list[dict[str, Any]] = []
    if args.ab:
        print(
            f"\nlive A/B {args.ab}: {args.ab_rate:g} events/s from {args.ab_sources} sources for {args.ab_seconds:g} s"
        )
        print(
            f"{'arm':4} {'strategy':12} {'share':>5} {'sources':>7} {'events':>8} {'rows/ev':>8} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'store p99':>9}"
        )
        ab = live_ab(args.ab, seconds=args.ab_seconds, rate=args.ab_rate, sources=args.ab_sources)
        for label, arm in zip("AB", ab, strict=True):
            rows = arm["rows"] / arm["events"] if arm["events"] else None
            print(
                f"{label:4} {arm['strategy']:12} {arm['share']:5.2f} {arm['sources']:7d} {arm['events']:8d} "
                f"{adaptive._fmt(rows, '8.4f')} {adaptive._fmt(arm['p50_ms'], '8.1f')} "
                f"{adaptive._fmt(arm['p99_ms'], '8.1f')} {adaptive._fmt(arm['store_latency_p99_ms'], '9.1f')}",
                flush=True,
            )
    if args.json:
        print(json.dumps({"recorded": model, "live": live, "ab": ab}))


if __name__ == "__main__":
    main()
