"""The settings table is the one source of every default, of ``from_env``, ``--help`` and docs/configuration.md."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sse_batcher import constants
from sse_batcher.server.cli import settings_help
from sse_batcher.server.config import ServerConfig

CONFIGURATION_PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_setting_has_a_module_constant_and_every_constant_a_setting() -> None:
    names = {s.name for s in constants.SETTINGS}
    declared = {n for n in vars(constants) if re.fullmatch(r"(SSE_[A-Z0-9_]+|DATABASE_URL)", n)}
    assert names == declared
    assert len(names) == len(constants.SETTINGS), "a setting is listed twice"


def test_configuration_page_table_is_the_generated_one() -> None:
    text = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    begin = text.index("<!-- settings:begin")
    table = text[text.index("\n", begin) + 1 : text.index("<!-- settings:end -->")]
    assert table == constants.markdown_table(), "run `python constants.py`; its table goes in docs/configuration.md"


def test_serve_help_lists_every_setting() -> None:
    text = settings_help()
    for setting in constants.SETTINGS:
        assert setting.name in text


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
            number = int(s.maximum) if s.maximum is not None and s.maximum < 1000 else 777
            raw, value = str(number), number
        elif s.type is float:
            raw = "0.75"
            value = float(raw)
        elif s.type is Path:
            raw, value = "/tmp/elsewhere", Path("/tmp/elsewhere")
        elif s.name == "DATABASE_URL":
            raw, value = "postgresql://x@localhost/y", "postgresql://x@localhost/y"
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


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("SSE_BATCH_SIZE", "ten", "SSE_BATCH_SIZE must be an integer"),
        ("SSE_BATCH_SIZE", "0", "SSE_BATCH_SIZE must be >= 1"),
        ("SSE_BATCH_TIMEOUT_SECONDS", "nan", "SSE_BATCH_TIMEOUT_SECONDS must be a number, got NaN"),
        ("SSE_BATCH_TIMEOUT_SECONDS", "0", "SSE_BATCH_TIMEOUT_SECONDS must be > 0"),
        ("SSE_PORT", "70000", "SSE_PORT must be <= 65535"),
        ("SSE_BATCHING_ENABLED", "maybe", "SSE_BATCHING_ENABLED must be true or false"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ServerConfig.from_env({name: raw})


def test_an_empty_variable_means_the_default() -> None:
    assert (
        ServerConfig.from_env({"SSE_BATCH_SIZE": ""}).batcher.batch_size == constants.setting("SSE_BATCH_SIZE").default
    )


def test_every_field_a_setting_names_exists() -> None:
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    nested = {
        name: {f.name for f in dataclasses.fields(type(getattr(ServerConfig(), name)))}
        for name in ("batcher", "sizing", "store")
    }
    for s in constants.SETTINGS:
        for path in s.fields:
            group, _, field = path.rpartition(".")
            assert field in (nested[group] if group else known), path
