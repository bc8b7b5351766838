"""The ``sse-batcher`` command (``server/cli.py``): plain --help, and every bad setting as one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sse_batcher import constants
from sse_batcher.server.cli import settings_help

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SSE_") and k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, *args], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_serve_help_lists_every_setting() -> None:
    text = settings_help()
    for setting in constants.SETTINGS:
        assert setting.name in text


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["loadtest", "--help"]])
def test_help_is_plain_text_without_markup(args: list[str]) -> None:
    done = _run(["-m", "sse_batcher.server", *args], {})
    assert done.returncode == 0, done.stderr
    assert "`" not in done.stdout


@pytest.mark.parametrize(
    ("env", "args", "line"),
    [
        ({"SSE_BATCH_SIZE": "-5"}, [], "sse-batcher: SSE_BATCH_SIZE must be >= 1, got -5"),
        ({"SSE_PORT": "abc"}, [], "sse-batcher: SSE_PORT must be an integer, got 'abc'"),
        ({"SSE_BATCHING_ENABLED": "maybe"}, [], "sse-batcher: SSE_BATCHING_ENABLED must be true or false, got 'maybe'"),
        ({"SSE_BATCH_TIMEOUT_SECONDS": "nan"}, [], "sse-batcher: SSE_BATCH_TIMEOUT_SECONDS must be a number, got NaN"),
        ({"DATABASE_URL": "mysql://db/events"}, [], "sse-batcher: database_url must be a postgresql:// URL"),
        ({}, ["--port", "99999"], "sse-batcher: port must be 0-65535, got 99999"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(env: dict[str, str], args: list[str], line: str) -> None:
    done = _run(["-m", "sse_batcher.server", "serve", *args], env)

    assert done.returncode == 2
    assert done.stderr == line + "\n"


@pytest.mark.parametrize("env", [{"SSE_PORT": "abc"}, {"SSE_BATCH_SIZE": "-5"}, {"SSE_DATA_DIR": ""}])
def test_importing_the_library_parses_no_setting(env: dict[str, str]) -> None:
    code = "import sse_batcher, sse_batcher.batcher, sse_batcher.workers, sse_batcher.server.config"
    done = _run(["-c", code], env)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
