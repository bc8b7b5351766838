"""Simulate the sizing controller on recorded load, before trusting it on a real server.

Run: ``python -m bench.simulate_sizing`` (replays ``bench/data/load_trace.json``), or first
``python -m bench.simulate_sizing --record bench/data/load_trace.json`` to record this machine:
psutil figures every 0.5 s, half of the time idle, half with a CPU burner per core.

The model is a single flush loop, as in the batcher. A flush of ``n`` events in ``m`` messages
costs, in ms: a store write of ``0.65 + 0.0046 n`` and an aggregation of ``0.01 + 0.0006 n``
(both measured on the embedded PostgreSQL: 1, 10, 100, 500 events in 4 groups), plus the
fan-out, ``clients x (0.03 m + 0.0001 n)`` (an assumed 30 us per SSE message per client and
0.1 us per event it carries). The recorded CPU figure slows all of it by ``1 + 1.5 cpu``: on a
saturated machine the server gets a share of the cores, not all of them. The batcher's flush
report times the store write only (fan-out happens in the clients' tasks); the fan-out shows up
as event-loop lag, as on the real server. The workload is the
benchmark's: quiet periods with a lone event every 250 ms, and bursts of 20,000 events
published at 40,000 events/s, with 200 clients.

The server's CPU time in a window (what the ``learned`` strategy divides by) is the modelled
busy time of its flushes (write plus fan-out), plus 5 us per event published and 10 ms per
second of idle bookkeeping.

Three policies are compared: the fixed size of 10 (timeout 0.5 s), the ``adaptive`` strategy in
``batcher/sizing/strategies.py``, and the opposite direction (shrink under load, grow when idle), so
the guide's choice of direction rests on figures, not on intuition. ``python -m bench.strategies``
runs every named strategy through the same model.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sse_batcher.batcher.sizing.load import LoadSample, psutil_sampler
from sse_batcher.batcher.sizing.named import make_strategy
from sse_batcher.batcher.sizing.strategies import Signals, SizingConfig

TRACE = Path(__file__).parent / "data" / "load_trace.json"
CLIENTS = 200
GROUPS = 4
BURST = 20_000
BURST_RATE = 40_000.0
QUIET_SECONDS = 5.0
LONE_EVERY_SECONDS = 0.25
CYCLES = 4


def _burn(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


def record(path: Path, seconds: float) -> None:
    """Record psutil load every 0.5 s: the first half idle, the second with a burner per core."""
    sample = psutil_sampler()
    stop = multiprocessing.Event()
    burners: list[multiprocessing.Process] = []
    trace: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        while (now := time.monotonic() - started) < seconds:
            if now >= seconds / 2 and not burners:
                count = multiprocessing.cpu_count()
                burners = [multiprocessing.Process(target=_burn, args=(stop,)) for _ in range(count)]
                for burner in burners:
                    burner.start()
            time.sleep(0.5)
            load = sample()
            trace.append({"t": round(time.monotonic() - started, 3), "cpu_percent": load.cpu_percent})
    finally:
        stop.set()
        for burner in burners:
            burner.join(5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine_cores": multiprocessing.cpu_count(), "samples": trace}, indent=0))
    print(f"recorded {len(trace)} samples to {path}")


def flush_ms(events: int, messages: int, cpu_percent: float) -> tuple[float, float]:
    """What one flush costs, in ms, on a machine at ``cpu_percent``: (store write, fan-out)."""
    slowdown = 1 + 1.5 * cpu_percent / 100
    write = 0.65 + 0.0046 * events + 0.01 + 0.0006 * events
    fanout = CLIENTS * (0.03 * messages + 0.0001 * events)
    return write * slowdown, fanout * slowdown


def workload(bursts: bool = True) -> tuple[list[float], list[bool]]:
    """Arrival times and whether each arrival is a lone (quiet-period) event."""
    arrivals: list[float] = []
    lone: list[bool] = []
    t = 0.0
    for _ in range(CYCLES):
        if not bursts:
            end = t + QUIET_SECONDS
            while t < end:
                arrivals.append(t)
                lone.append(True)
                t += LONE_EVERY_SECONDS
            continue
        end = t + QUIET_SECONDS
        while t < end:
            arrivals.append(t)
            lone.append(True)
            t += LONE_EVERY_SECONDS
        arrivals.extend(t + i / BURST_RATE for i in range(BURST))
        lone.extend([False] * BURST)
        t += BURST / BURST_RATE
    t += QUIET_SECONDS
    return arrivals, lone


Policy = Callable[[int, float, Signals, float], tuple[int, float, str] | None]


def fixed_policy(size: int, timeout: float, signals: Signals, now: float) -> tuple[int, float, str] | None:
    return None


def strategy_policy(name: str, seed: int = 1) -> Policy:
    """The named strategy (``sizing.strategies``) with the default config, as a simulation policy."""
    controller = make_strategy(SizingConfig(strategy=name, seed=seed), default_size=10, max_timeout_seconds=0.5)

    def decide(size: int, timeout: float, signals: Signals, now: float) -> tuple[int, float, str] | None:
        decision = controller.decide(size, timeout, signals, now)
        return None if decision is None else (decision.size, decision.timeout_seconds, decision.reason)

    return decide


def adaptive_policy() -> Policy:
    return strategy_policy("adaptive")


def inverse_policy() -> Policy:
    """The other direction: small batches under load (latency first), large ones when idle."""
    config = SizingConfig()
    last = [-math.inf]

    def decide(size: int, timeout: float, signals: Signals, now: float) -> tuple[int, float, str] | None:
        if now - last[0] < config.cooldown_seconds or signals.load is None:
            return None
        busy = signals.load.cpu_percent >= config.high_load_percent or signals.backlog >= 2 * size
        if busy:
            new = (max(config.min_size, size // 2), max(config.min_timeout_seconds, timeout / 2), "inverse_busy")
        elif signals.load.cpu_percent < config.low_load_percent:
            new = (min(config.max_size, size * 2), 0.5, "inverse_idle")
        else:
            return None
        if new[:2] == (size, timeout):
            return None
        last[0] = now
        return new

    return decide


@dataclass
class Result:
    burst_events_per_second: float
    p50_ms: float
    p99_ms: float
    lone_p50_ms: float
    rows_per_event: float
    adjustments: int
    cpu_us_per_event: float = 0.0


def simulate(policy: Policy, cpu_at: Callable[[float], float], bursts: bool = True) -> Result:
    arrivals, lone = workload(bursts)
    n = len(arrivals)
    latency = [0.0] * n
    size, timeout = 10, 0.5
    buffer: deque[int] = deque()
    nxt = 0
    t = 0.0
    tick = 1.0
    window = {"flushes": 0, "full": 0, "events": 0, "write": 0.0, "lag": 0.0, "cpu": 0.0, "start": 0.0}
    long_write: float | None = None
    rows = 0
    adjustments = 0
    cpu_total = 0.0

    def decide(now: float) -> None:
        nonlocal size, timeout, long_write, adjustments
        short = window["write"] / window["flushes"] if window["flushes"] else None
        load = LoadSample(
            cpu_percent=cpu_at(now),
            process_cpu_percent=0.0,
            memory_percent=0.0,
            load_per_core=0.0,
            loop_lag_seconds=window["lag"],
            backlog=len(buffer),
            taken_at=now,
        )
        signals = Signals(
            load=load,
            backlog=len(buffer),
            flushes=int(window["flushes"]),
            full_flushes=int(window["full"]),
            events=int(window["events"]),
            write_seconds=short,
            long_write_seconds=long_write,
            period_seconds=now - window["start"] if now > window["start"] else None,
            cpu_seconds=window["cpu"] + 0.01 * max(0.0, now - window["start"]) or None,
        )
        change = policy(size, timeout, signals, now)
        if short is not None:
            long_write = short if long_write is None else long_write + 0.1 * (short - long_write)
        window.update(flushes=0, full=0, events=0, write=0.0, lag=0.0, cpu=0.0, start=now)
        if change is not None:
            size, timeout, _ = change
            adjustments += 1

    while nxt < n or buffer:
        while nxt < n and arrivals[nxt] <= t:
            buffer.append(nxt)
            nxt += 1
        while tick <= t:
            decide(tick)
            tick += 1.0
        if len(buffer) >= size or (buffer and t >= arrivals[buffer[0]] + timeout):
            full = len(buffer) >= size
            taken = [buffer.popleft() for _ in range(min(size, len(buffer)))]
            messages = min(len(taken), GROUPS)
            write_ms, fanout_ms = flush_ms(len(taken), messages, cpu_at(t))
            t += (write_ms + fanout_ms) / 1000
            for index in taken:
                latency[index] = t - arrivals[index]
            rows += messages
            window["flushes"] += 1
            window["full"] += full
            window["events"] += len(taken)
            window["write"] += write_ms / 1000
            window["lag"] = max(window["lag"], fanout_ms / 1000)
            window["cpu"] += (write_ms + fanout_ms + 0.005 * len(taken)) / 1000
            cpu_total += (write_ms + fanout_ms + 0.005 * len(taken)) / 1000
            if len(buffer) >= 2 * size:
                decide(t)  # the manager decides at once on a flush that leaves a backlog
            continue
        due = arrivals[buffer[0]] + timeout if buffer else math.inf
        fill = arrivals[nxt + size - len(buffer) - 1] if nxt + size - len(buffer) - 1 < n else math.inf
        t = max(t, min(due, fill, tick, arrivals[nxt] if nxt < n else math.inf))

    burst_latency = [latency[i] for i in range(n) if not lone[i]]
    lone_latency = [latency[i] for i in range(n) if lone[i]]
    burst_seconds = _burst_seconds(arrivals, lone, latency)
    quantiles = statistics.quantiles(latency, n=100)
    return Result(
        burst_events_per_second=len(burst_latency) / burst_seconds if burst_seconds else 0.0,
        p50_ms=statistics.median(latency) * 1000,
        p99_ms=quantiles[98] * 1000,
        lone_p50_ms=statistics.median(lone_latency) * 1000,
        rows_per_event=rows / n,
        adjustments=adjustments,
        cpu_us_per_event=1e6 * cpu_total / n,
    )


def _burst_seconds(arrivals: list[float], lone: list[bool], latency: list[float]) -> float:
    """Sum over bursts of first arrival to last delivery: the time the server took to deliver each."""
    total = 0.0
    start: float | None = None
    last_done = 0.0
    for i, arrival in enumerate(arrivals):
        if not lone[i]:
            if start is None:
                start = arrival
            last_done = max(last_done, arrival + latency[i])
        elif start is not None:
            total += last_done - start
            start = None
    if start is not None:
        total += last_done - start
    return total


def cpu_series(path: Path, stressed: bool) -> Callable[[float], float]:
    """The recorded CPU figures of one half of the trace, replayed in a loop."""
    samples = json.loads(path.read_text())["samples"]
    half = len(samples) // 2
    values = [s["cpu_percent"] for s in (samples[half + 2 :] if stressed else samples[: half - 1])]

    def at(t: float) -> float:
        return float(values[int(t / 0.5) % len(values)])

    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", type=Path, help="record a load trace to this file and stop")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to record")
    parser.add_argument("--trace", type=Path, default=TRACE)
    args = parser.parse_args()
    if args.record:
        record(args.record, args.seconds)
        return
    print(f"{CYCLES} cycles of {QUIET_SECONDS:g} s quiet + a burst of {BURST} events; {CLIENTS} clients")
    header = ("load", "policy", "burst ev/s", "p50 ms", "p99 ms", "lone p50", "rows/ev", "changes")
    print("{:7} {:9} {:>11} {:>8} {:>8} {:>9} {:>8} {:>8}".format(*header))
    scenarios: list[tuple[str, Callable[[float], float]]] = [
        ("idle", lambda t: 5.0),  # a quiet machine, for reference: the recording may not have one
        ("rec", cpu_series(args.trace, stressed=False)),  # the recorded machine, no burner of ours
        ("stress", cpu_series(args.trace, stressed=True)),  # with a burner per core
    ]
    for label, cpu in scenarios:
        policies = (("fixed10", lambda: fixed_policy), ("adaptive", adaptive_policy), ("inverse", inverse_policy))
        for name, make in policies:
            r = simulate(make(), cpu)
            quiet = simulate(make(), cpu, bursts=False)  # lone events on their own, no burst to queue behind
            print(
                f"{label:7} {name:9} {r.burst_events_per_second:11.0f} {r.p50_ms:8.1f} "
                f"{r.p99_ms:8.1f} {quiet.lone_p50_ms:9.1f} {r.rows_per_event:8.4f} {r.adjustments:8d}"
            )


if __name__ == "__main__":
    main()
