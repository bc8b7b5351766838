"""ServerConfig (``server/config.py``): ``from_env`` fills every field a setting names, and a value out of
range stops the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from sse_batcher import constants
from sse_batcher.server.config import ServerConfig
from tests.server.live import make_config


def _field_value(config: ServerConfig, path: str) -> object:
    value: object = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def test_from_env_fills_every_field_a_setting_names() -> None:
    # A value distinct from every default, within bounds, for each setting that fills a field.
    environ: dict[str, str] = {}
    expected: dict[str, object] = {}
    for s in constants.SETTINGS:
        if not s.fields:
            continue
        if s.type is bool:
            raw, value = ("false", False) if s.default else ("true", True)
        elif s.type is int:
            number = int(s.maximum) if s.maximum is not None and s.maximum < 1000 else max(777, int(s.minimum or 0) + 1)
            raw, value = str(number), number
        elif s.type is float:
            raw = "0.75"
            value = float(raw)
        elif s.type is Path:
            raw, value = "/tmp/elsewhere", Path("/tmp/elsewhere")
        elif s.name == "DATABASE_URL":
            raw, value = "postgresql://x@localhost/y", "postgresql://x@localhost/y"
        elif s.name == "SSE_ALLOWED_HOSTS":
            raw, value = "a.example, *.b.example", ("a.example", "*.b.example")
        elif s.type is tuple:
            raw, value = "https://a.example, http://b.example:8080", ("https://a.example", "http://b.example:8080")
        elif s.name == "SSE_STREAM_TOKEN_SECRET":
            raw, value = "z" * 32, "z" * 32
        else:
            raw, value = "zzz", "zzz"
        environ[s.name] = raw
        expected[s.name] = value
    # Keep cross-field constraints valid: min <= max sizes, low <= high load.
    environ["SSE_BATCH_SIZE_MIN"], expected["SSE_BATCH_SIZE_MIN"] = "7", 7
    environ["SSE_LOAD_LOW_PERCENT"], expected["SSE_LOAD_LOW_PERCENT"] = "10", 10.0
    environ["SSE_LOAD_HIGH_PERCENT"], expected["SSE_LOAD_HIGH_PERCENT"] = "90", 90.0
    environ["SSE_BATCH_SIZE"], expected["SSE_BATCH_SIZE"] = "20", 20
    environ["SSE_BATCH_STRATEGY"], expected["SSE_BATCH_STRATEGY"] = "learned", "learned"  # one of its choices
    environ["SSE_BATCH_STRATEGY_B"], expected["SSE_BATCH_STRATEGY_B"] = "fixed", "fixed"
    config = ServerConfig.from_env(environ)
    for s in constants.SETTINGS:
        for path in s.fields:
            assert _field_value(config, path) == expected[s.name], (s.name, path)


def test_node_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_NODE_ID", "edge-a")
    monkeypatch.setenv("SSE_NODE_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("SSE_WORKERS", "3")
    config = ServerConfig.from_env()
    assert (config.node_id, config.node_heartbeat_seconds, config.workers) == ("edge-a", 0.5, 3)


@pytest.mark.parametrize(
    "overrides",
    [{"node_heartbeat_seconds": 0.0}, {"workers": 0}, {"workers": 65}, {"node_id": ""}, {"slot": -1}],
)
def test_node_settings_out_of_range_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**overrides)  # type: ignore[arg-type]


def test_a_config_with_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="publish_rate_limit"):
        make_config("postgresql://x@localhost/y", Path("."), publish_rate_limit=-1.0)


def test_a_bad_origin_setting_stops_the_config() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        make_config("postgresql://x@localhost/y", Path("."), cors_origins=("app.example",))
