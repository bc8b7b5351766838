"""The load tool's SSE readers (``server/client/_load_readers.py``): counting and parsing clients, fed the
bytes each kind of server sends."""

from __future__ import annotations

import pytest

from sse_batcher.server.client._load_readers import CountingClient

_AGGREGATE = (
    b'id: 7\nevent: LOAD_TEST_BATCH\ndata: {"type":"LOAD_TEST_BATCH","event_type":"LOAD_TEST","source":"loadtest",'
    b'"batch_count":2,"events":[{"seq":1,"ts":100.0,"data":{"i":0}},{"seq":2,"ts":100.0,"data":{"i":1}}]}\n\n'
)
# What nchan relays: the posted list of events, stamped by the tool, with a non-integer id.
_STAMPED_LIST = (
    b'id: 1764611234:0\nevent: LOAD_TEST_BATCH\ndata: [{"type":"LOAD_TEST","source":"loadtest","data":{"i":2},'
    b'"seq":3,"ts":100.5},{"type":"LOAD_TEST","source":"loadtest","data":{"i":3},"seq":4,"ts":100.5}]\n\n'
)
# The server's own notice: it has a seq, but it is not an event the tool published.
_NOTICE = b'id: 8\nevent: BATCH_SIZE_ADJUSTED\ndata: {"type":"BATCH_SIZE_ADJUSTED","seq":9,"ts":1.0,"data":{}}\n\n'


def _client(sampled: bool) -> CountingClient:
    return CountingClient(sampled, lambda: None)


@pytest.mark.parametrize("split", range(1, len(_AGGREGATE + _STAMPED_LIST)))
def test_events_and_messages_are_counted_once_wherever_a_read_splits_them(split: int) -> None:
    client = _client(sampled=False)
    stream = _AGGREGATE + _STAMPED_LIST
    client._feed(stream[:split], 101.0)
    client._feed(stream[split:], 101.0)
    assert (client.events, client.messages, client.bytes) == (4, 2, len(stream))


def test_the_servers_own_notices_are_not_counted_as_delivered_events() -> None:
    client = _client(sampled=False)
    client._feed(_NOTICE + _AGGREGATE, 101.0)
    assert client.events == 2


def test_a_sampled_client_reads_aggregates_and_stamped_lists_alike() -> None:
    client = _client(sampled=True)
    client._feed(_AGGREGATE + _STAMPED_LIST, 101.0)
    assert client.seqs == {1, 2, 3, 4}
    assert sorted(round(x, 3) for x in client.latencies) == [0.5, 0.5, 1.0, 1.0]
    client._feed(_AGGREGATE, 101.0)
    assert client.duplicates == 2
