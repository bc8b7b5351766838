"""The steps of one digest pass (``batcher/digests/_pass.py``): ingest keeps a cursor per digested type, so a
node with fewer rules never moves past rows another node digests."""

from __future__ import annotations

import msgspec

from sse_batcher.batcher import PostgresStore, TypeRule
from sse_batcher.batcher.digests.digester import Digester
from sse_batcher.batcher.events import Event
from tests.batcher.digests.test_digester import HOUR, T0, Clock, digester, digests, events, store_events
from tests.pg import store_config


async def test_a_node_without_a_rule_never_moves_past_the_rows_of_that_type(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0)
    both = {"APPROVAL": TypeRule(digest_seconds=HOUR), "ALERT": TypeRule(digest_seconds=HOUR)}
    async with digester(dsn, clock) as old, Digester(store_config(dsn), both, clock=clock) as new:
        alert = Event("ALERT", "s", 1, T0 + 1, msgspec.Raw(b"{}"))
        await store_events(store, [alert, *events("s", 2, [T0 + 2])])
        await old.run_pass()  # a node still on the old rules: digests APPROVAL only
        clock.now = T0 + HOUR + 5
        await new.run_pass()
    assert sorted((d["type"], d["data"]["count"]) for d in await digests(dsn)) == [
        ("ALERT_DIGEST", 1),
        ("APPROVAL_DIGEST", 1),
    ]
