"""``sse_batcher.server.asgi:app``: the importable app other ASGI servers load reads its config from the environment."""

from __future__ import annotations

import importlib

import pytest
from starlette.applications import Starlette

from sse_batcher.server import asgi


def test_the_app_takes_its_settings_from_the_environment_and_runs_no_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_PING_SECONDS", "7.5")
    monkeypatch.setenv("SSE_MAX_CLIENTS", "1234")
    module = importlib.reload(asgi)
    try:
        assert isinstance(module.app, Starlette)
        config = module.app.state.config
        assert (config.ping_seconds, config.max_clients, config.demo) == (7.5, 1234, False)
    finally:
        monkeypatch.undo()
        importlib.reload(asgi)


def test_a_bad_setting_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_PING_SECONDS", "soon")
    with pytest.raises(ValueError, match="SSE_PING_SECONDS"):
        importlib.reload(asgi)
    monkeypatch.undo()
    importlib.reload(asgi)
