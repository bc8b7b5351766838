"""Routing for the live A/B (``batcher/sizing/_routing.py``): a source's arm is stable and follows the share."""

from __future__ import annotations

import os
import subprocess
import sys

from sse_batcher.batcher.sizing._routing import arm_of

NAMES = [f"worker-{i}" for i in range(200)]


def test_the_split_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from sse_batcher.batcher.sizing._routing import arm_of; "
        "print(''.join(str(arm_of(f'worker-{i}', 0.5)) for i in range(200)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == "".join(str(arm_of(name, 0.5)) for name in NAMES)


def test_the_split_routes_about_the_share_and_the_extremes_route_everything_one_way() -> None:
    sources = [f"s{i}" for i in range(10_000)]
    share = sum(arm_of(s, 0.3) for s in sources) / len(sources)
    assert 0.27 < share < 0.33
    assert {arm_of(s, 0.0) for s in sources} == {0}
    assert {arm_of(s, 1.0) for s in sources} == {1}
