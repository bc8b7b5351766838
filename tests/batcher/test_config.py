from __future__ import annotations

import math

import pytest

from sse_batcher.batcher import BatcherConfig, ConfigError, StoreConfig


@pytest.mark.parametrize("value", [0, -1.0, math.nan])
def test_timeouts_must_be_positive_numbers(value: float) -> None:
    with pytest.raises(ConfigError, match="batch_timeout_seconds must be > 0"):
        BatcherConfig(batch_timeout_seconds=value)


@pytest.mark.parametrize("value", [-1, math.nan])
def test_retry_delay_may_be_zero_but_not_negative_or_nan(value: float) -> None:
    assert BatcherConfig(retry_delay_seconds=0).retry_delay_seconds == 0
    with pytest.raises(ConfigError, match="retry_delay_seconds must be >= 0"):
        BatcherConfig(retry_delay_seconds=value)


def test_batch_size_must_fit_the_buffer() -> None:
    with pytest.raises(ConfigError, match="batch_size must not exceed max_buffered_events"):
        BatcherConfig(batch_size=11, max_buffered_events=10)


def test_an_event_must_fit_the_buffer_in_bytes() -> None:
    with pytest.raises(ConfigError, match="max_event_bytes must not exceed max_buffered_bytes"):
        BatcherConfig(max_event_bytes=2048, max_buffered_bytes=1024)


def test_store_config_needs_a_dsn_and_a_positive_pool() -> None:
    with pytest.raises(ConfigError, match="dsn"):
        StoreConfig(dsn="")
    with pytest.raises(ConfigError, match="pool_size must be > 0"):
        StoreConfig(dsn="postgresql://localhost/x", pool_size=0)
