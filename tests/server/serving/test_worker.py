"""What each worker of ``serve --workers N`` gets (``server/serving/_worker.py``)."""

from __future__ import annotations

from sse_batcher.server import ServerConfig
from sse_batcher.server.serving._worker import share_limits, worker_config


def test_each_worker_gets_its_share_of_the_per_client_limits_rounded_down_and_at_least_1() -> None:
    config = ServerConfig(workers=4, publish_rate_limit=10.0, max_clients_per_ip=10)
    share = share_limits(config)
    assert (share.publish_rate_limit, share.publish_burst, share.max_clients_per_ip) == (2.5, 5, 2)
    tiny = share_limits(ServerConfig(workers=4, publish_rate_limit=1.0, publish_rate_burst=2, max_clients_per_ip=3))
    assert (tiny.publish_burst, tiny.max_clients_per_ip) == (1, 1)
    unlimited = share_limits(ServerConfig(workers=4))
    assert (unlimited.publish_rate_limit, unlimited.max_clients_per_ip) == (0.0, None)
    assert share_limits(ServerConfig(workers=1, publish_rate_limit=10.0)).publish_rate_limit == 10.0


def test_each_worker_gets_its_slot_a_node_id_of_its_own_and_its_share_of_the_demo() -> None:
    config = ServerConfig(workers=2, node_id="edge", demo_rate=10.0)
    second = worker_config(config, 1)
    assert (second.slot, second.node_id, second.demo_rate) == (1, "edge-1", 5.0)
    assert worker_config(ServerConfig(workers=1, node_id="edge"), 0).node_id == "edge"
