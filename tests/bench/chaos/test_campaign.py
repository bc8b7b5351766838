"""The fault campaign as a test: a real three-node cluster, faults on a schedule, zero anomalies.

The short one is the CI variant, in the default run: 40 s of faults, under two minutes in all. Forty seconds hold three
to five faults, not all eleven kinds, so it rotates through them: each UTC day draws a window of
three kinds (and its seed) from the day's number, each at least once (the round begun is finished),
and every kind comes round within four days. A failure names the seed and kinds, so
``python -m bench.chaos --seconds 40 --seed S --kinds K --whole-rounds`` replays the schedule (the timing of a real
cluster varies). The ten-minute one (``slow``) draws every kind.
"""

from __future__ import annotations

import datetime
import random

import pytest

from bench.chaos.campaign import run_campaign
from bench.chaos.faults import FAULT_KINDS
from bench.chaos.report import render

_SHORT_KINDS = 3


def rotation(day: int, size: int = _SHORT_KINDS) -> list[str]:
    """The ``size`` fault kinds of day number ``day``: consecutive windows over every kind, in turn."""
    kinds = list(FAULT_KINDS)
    start = day * size % len(kinds)
    return [kinds[(start + i) % len(kinds)] for i in range(size)]


async def _campaign_holds(seconds: float, seed: int, kinds: list[str] | None = None) -> None:
    outcome = await run_campaign(seed, seconds, kinds=kinds, whole_rounds=kinds is not None)
    replay = f"--seconds {seconds:g} --seed {seed}" + (f" --kinds {','.join(kinds)} --whole-rounds" if kinds else "")
    table = f"python -m bench.chaos {replay}\n" + render(outcome.history, outcome.result, outcome.kinds)
    assert not outcome.result.anomalies, table
    assert not outcome.leftovers, f"dead-letter files never written back: {outcome.leftovers}\n{table}"
    drawn = {fault.kind for fault in outcome.history.faults}
    assert drawn >= set(kinds or FAULT_KINDS), f"kinds never drawn: {set(kinds or FAULT_KINDS) - drawn}\n{table}"


def test_the_rotation_draws_every_kind_within_four_days() -> None:
    assert {kind for day in range(4) for kind in rotation(day)} == set(FAULT_KINDS)
    assert all(len(set(rotation(day))) == _SHORT_KINDS for day in range(30))


@pytest.mark.timeout(180)
async def test_a_short_campaign_finds_no_anomaly() -> None:
    day = datetime.datetime.now(datetime.UTC).date().toordinal()
    await _campaign_holds(40.0, seed=day, kinds=rotation(day))


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_ten_minute_campaign_finds_no_anomaly() -> None:
    await _campaign_holds(540.0, seed=random.SystemRandom().randrange(2**32))
