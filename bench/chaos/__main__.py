"""``python -m bench.chaos``: run a fault campaign against a three-node cluster and print its table.

Exit status 1 when the checker found an anomaly. The seed is printed first; the same seed draws
the same faults on the same nodes in the same order (the timing of a real cluster varies).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

from bench._pg import machine
from bench.chaos.campaign import run_campaign
from bench.chaos.faults import FAULT_KINDS
from bench.chaos.report import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="time faults are injected (default 180)")
    parser.add_argument("--seed", type=int, default=None, help="schedule seed (default: a random one, printed)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--kinds", default=None, help=f"comma-separated subset of: {', '.join(FAULT_KINDS)}")
    parser.add_argument(
        "--whole-rounds", action="store_true", help="finish the round of the deck begun when the time runs out"
    )
    parser.add_argument("--logs", type=Path, default=None, help="copy the node logs to this directory")
    parser.add_argument("--history", type=Path, default=None, help="write the recorded history to this JSON file")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",") if args.kinds else list(FAULT_KINDS)
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        parser.error(f"unknown fault kind {unknown[0]!r}; choose from {', '.join(FAULT_KINDS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}; {args.seconds:g} s of faults on {args.nodes} nodes; {machine()}", flush=True)
    started = time.monotonic()
    outcome = asyncio.run(
        run_campaign(seed, args.seconds, nodes=args.nodes, kinds=kinds, logs=args.logs, whole_rounds=args.whole_rounds)
    )
    print(render(outcome.history, outcome.result, outcome.kinds))
    if args.history is not None:
        history = dataclasses.asdict(outcome.history)
        history["coalesced_types"] = sorted(history["coalesced_types"])
        args.history.write_text(json.dumps(history))
    for path, lines in outcome.leftovers.items():
        print(f"dead-letter file never written back: {path} ({lines} batches)")
    print(f"wall time {time.monotonic() - started:.0f} s" + (f"; node logs in {args.logs}" if args.logs else ""))
    return 1 if outcome.result.anomalies or outcome.leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
