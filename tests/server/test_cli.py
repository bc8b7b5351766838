"""The ``sse-batcher`` command (``server/cli.py``): ``serve --help`` lists every setting."""

from __future__ import annotations

from sse_batcher import constants
from sse_batcher.server.cli import settings_help


def test_serve_help_lists_every_setting() -> None:
    text = settings_help()
    for setting in constants.SETTINGS:
        assert setting.name in text
