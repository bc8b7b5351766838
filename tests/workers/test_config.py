"""A worker's configuration (``workers/config.py``): a value out of range is refused."""

from __future__ import annotations

import pytest

from sse_batcher.batcher import ConfigError
from sse_batcher.workers import WorkerConfig


def test_config_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        WorkerConfig(concurrency=0)
    with pytest.raises(ConfigError, match="queue_size"):
        WorkerConfig(queue_size=0)
    with pytest.raises(ValueError, match="stop_timeout_seconds"):
        WorkerConfig(stop_timeout_seconds=-1)
