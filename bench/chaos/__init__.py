"""A fault campaign in the manner of Jepsen: a real three-node cluster, faults on a seeded schedule,
clients that record everything they were told, and a pure checker over that history.

Run: ``python -m bench.chaos [--seconds 180] [--seed N]``. Modules, in the order a run uses them:
``proxy`` (the TCP proxy each node reaches PostgreSQL through), ``cluster`` (PostgreSQL, proxies,
node processes), ``faults`` (the fault kinds and their schedule), ``clients`` (publishers and
subscribers), ``history`` (what was recorded), ``checker`` (the anomalies in a history),
``report`` (the table per fault kind) and ``campaign`` (one run, start to end).
"""
