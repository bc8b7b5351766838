"""The settings table is the one source of every default, of what ``from_env`` parses, and of docs/configuration.md."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from sse_batcher import constants
from sse_batcher.server.config import ServerConfig

CONFIGURATION_PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_setting_has_a_module_constant_and_every_constant_a_setting() -> None:
    names = {s.name for s in constants.SETTINGS}
    exported = {n for n in constants.__all__ if re.fullmatch(r"(SSE_[A-Z0-9_]+|DATABASE_URL)", n)}
    assert names == exported
    assert len(names) == len(constants.SETTINGS), "a setting is listed twice"
    for name in names:
        assert getattr(constants, name) == constants.setting(name).value(os.environ)


def test_a_constant_is_read_from_the_environment_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_BATCH_SIZE", "7")
    assert constants.SSE_BATCH_SIZE == 7
    monkeypatch.setenv("SSE_BATCH_SIZE", "-5")
    with pytest.raises(constants.SettingError, match="SSE_BATCH_SIZE must be >= 1, got -5"):
        constants.SSE_BATCH_SIZE  # noqa: B018 - the access is the test


def test_an_unknown_constant_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        constants.SSE_NO_SUCH_SETTING  # type: ignore[attr-defined]  # noqa: B018


def test_configuration_page_table_is_the_generated_one() -> None:
    text = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    begin = text.index("<!-- settings:begin")
    table = text[text.index("\n", begin) + 1 : text.index("<!-- settings:end -->")]
    assert table == constants.markdown_table(), "run `python constants.py`; its table goes in docs/configuration.md"


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
