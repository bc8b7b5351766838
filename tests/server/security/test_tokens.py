"""Credentials: token files rotated without a restart, and short-lived signed stream tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path

import anyio
import httpx
import pytest

from sse_batcher.batcher import ConfigError
from sse_batcher.server.security.tokens import InvalidStreamToken, StreamTokens, TokenSet, parse_tokens
from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import publish

SECRET = "a-stream-token-secret-of-some-length"


def _rotate(path: Path, text: str) -> None:
    """Replace the file whole, as a deploy tool does (a reader never sees it half written)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


# -- token sets --------------------------------------------------------------------------------
def test_a_tokens_file_has_one_token_a_line_with_comments_and_blanks_skipped() -> None:
    assert parse_tokens("# deploy 2026-12\n  alpha  \n\n#beta\ngamma\r\n") == ["alpha", "gamma"]


def test_the_single_token_and_the_file_are_accepted_together(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("from-file\n")
    tokens = TokenSet("publish", "single", file)
    assert tokens.required and len(tokens) == 2
    assert tokens.matches("single") and tokens.matches("from-file")
    assert not tokens.matches("from-fil") and not tokens.matches("")
    assert not TokenSet("publish").required


def test_an_unreadable_file_at_start_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        TokenSet("subscribe", None, tmp_path / "missing")


def test_a_file_that_becomes_unreadable_or_empty_keeps_the_last_good_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "tokens"
    file.write_text("old\n")
    tokens = TokenSet("publish", None, file, check_interval_seconds=0)
    file.unlink()
    with caplog.at_level(logging.WARNING, logger="sse_batcher.server.security.tokens"):
        assert tokens.matches("old")
    assert "kept the last 1 publish tokens" in caplog.text
    file.write_text("")
    assert tokens.matches("old")  # a half-written rewrite does not lock everyone out
    file.write_text("new\n")
    assert tokens.matches("new") and not tokens.matches("old")


def test_the_file_is_looked_at_no_more_than_once_per_interval(tmp_path: Path) -> None:
    now = [0.0]
    file = tmp_path / "tokens"
    file.write_text("old\n")
    tokens = TokenSet("publish", None, file, check_interval_seconds=1.0, clock=lambda: now[0])
    _rotate(file, "new\n")
    now[0] = 0.5
    assert tokens.matches("old")
    now[0] = 1.0
    assert tokens.matches("new") and not tokens.matches("old")


async def _status_becomes(client: httpx.AsyncClient, status: int, method: str, url: str, **kwargs: object) -> None:
    # The server looks at the file at most once a second: ask until it has.
    with anyio.fail_after(10):
        while (await client.request(method, url, **kwargs)).status_code != status:  # type: ignore[arg-type]  # noqa: ASYNC110 - polling the server, bounded by fail_after
            await anyio.sleep(0.05)


async def test_tokens_rotate_through_their_files_without_a_restart(dsn: str, tmp_path: Path) -> None:
    publish_file, subscribe_file = tmp_path / "publish.tokens", tmp_path / "subscribe.tokens"
    publish_file.write_text("# publishers\npub-old\n")
    subscribe_file.write_text("sub-old\n")
    config = make_config(
        dsn, tmp_path, publish_tokens_file=publish_file, subscribe_tokens_file=subscribe_file, subscribe_token="sub-env"
    )
    event = {"type": "JOB_STARTED", "data": {"job_id": 1}}
    async with serving(config) as live, live.client() as client:
        old, new = {"Authorization": "Bearer pub-old"}, {"Authorization": "Bearer pub-new"}
        assert (await client.post("/api/events", json=event, headers=new)).status_code == 401
        assert (await client.post("/api/events", json=event, headers=old)).status_code == 202
        assert (await client.get("/events", params={"token": "sub-new"})).status_code == 401
        _rotate(publish_file, "pub-new\n")
        _rotate(subscribe_file, "sub-new\n")
        await _status_becomes(client, 401, "POST", "/api/events", json=event, headers=old)
        assert (await client.post("/api/events", json=event, headers=new)).status_code == 202
        await _status_becomes(client, 401, "GET", "/events", params={"token": "sub-old"})
        for token in ("sub-new", "sub-env"):  # the single-token setting still works alongside
            async with client.stream("GET", "/events", params={"token": token}) as stream:
                assert stream.status_code == 200


async def test_an_open_stream_ends_once_its_subscribe_token_is_removed_from_the_file(dsn: str, tmp_path: Path) -> None:
    subscribe_file = tmp_path / "subscribe.tokens"
    subscribe_file.write_text("sub-kept\nsub-revoked\n")
    config = make_config(dsn, tmp_path, subscribe_tokens_file=subscribe_file, ping_seconds=0.3)
    async with serving(config) as live, live.client() as client:

        async def read(token: str, lines: list[str], ended: anyio.Event) -> None:
            async with client.stream("GET", "/events", params={"token": token}) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    lines.append(line)
            ended.set()

        revoked_lines: list[str] = []
        kept_lines: list[str] = []
        revoked_ended, kept_ended = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, "sub-revoked", revoked_lines, revoked_ended)
            tg.start_soon(read, "sub-kept", kept_lines, kept_ended)
            await publish(client, {"type": "BEFORE", "data": {}})
            await until(lambda: "event: BEFORE" in revoked_lines and "event: BEFORE" in kept_lines)
            _rotate(subscribe_file, "sub-kept\n")
            await _status_becomes(client, 401, "GET", "/events", params={"token": "sub-revoked"})
            with anyio.fail_after(5):  # idle, it ends at its next keep-alive
                await revoked_ended.wait()
            await publish(client, {"type": "AFTER", "data": {}})
            await until(lambda: "event: AFTER" in kept_lines)
            assert not kept_ended.is_set()
            tg.cancel_scope.cancel()
    assert "event: AFTER" not in revoked_lines


# -- stream tokens -----------------------------------------------------------------------------
def test_a_stream_token_carries_its_expiry_and_filters() -> None:
    signer = StreamTokens(SECRET)
    token, expires_at = signer.issue(60, ["B", "A"], ["web"])
    grant = signer.verify(token)
    assert grant.expires_at == expires_at and expires_at >= time.time() + 60
    assert grant.types == frozenset({"A", "B"}) and grant.sources == frozenset({"web"})
    assert signer.verify(signer.issue(5)[0]).types is None


@pytest.mark.parametrize("filters", [{"types": []}, {"sources": []}])
def test_a_stream_token_with_an_empty_filter_is_never_minted(filters: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match="empty"):
        StreamTokens(SECRET).issue(60, **filters)


def _signed(payload: dict[str, object]) -> str:
    """A stream token for ``payload`` signed with ``SECRET``, whatever :meth:`StreamTokens.issue` would mint."""
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    mac = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
    return f"sst1.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize(("filters", "field"), [({"types": []}, "types"), ({"sources": []}, "source")])
async def test_a_stream_token_with_an_empty_filter_opens_no_stream(
    guarded: LiveServer, filters: dict[str, list[str]], field: str
) -> None:
    token = _signed({"exp": int(time.time()) + 60, **filters})
    async with guarded.client() as client:
        response = await client.get("/events", params={"token": token})
    assert response.status_code == 403 and response.json()["field"] == field


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # signature changed
        lambda t: t.replace("sst1.", "sst1.e"),  # payload changed
        lambda t: StreamTokens("another-secret-of-some-length").issue(60)[0],  # another key
        lambda t: StreamTokens(SECRET, clock=lambda: time.time() - 3600).issue(60)[0],  # expired
        lambda t: "sst1.nonsense",
        lambda t: t.removeprefix("sst1."),
    ],
)
def test_a_tampered_foreign_expired_or_malformed_stream_token_is_invalid(forge: object) -> None:
    signer = StreamTokens(SECRET)
    token = signer.issue(60, ["A"])[0]
    with pytest.raises(InvalidStreamToken):
        signer.verify(forge(token))  # type: ignore[operator]


PUB = {"Authorization": "Bearer pub"}


async def _mint(client: httpx.AsyncClient, **body: object) -> str:
    response = await client.post("/api/stream-token", json=body, headers=PUB)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token: str = response.json()["token"]
    return token


async def test_an_expired_or_tampered_stream_token_gets_401(guarded: LiveServer) -> None:
    expired = StreamTokens(SECRET, clock=lambda: time.time() - 3600).issue(60)[0]
    async with guarded.client() as client:
        token = await _mint(client)
        tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
        for bad in (expired, tampered, token.replace(".", ".x", 1)):
            response = await client.get("/events", params={"token": bad})
            assert response.status_code == 401, bad
            assert response.headers["www-authenticate"] == "Bearer"


async def test_a_stream_ends_when_its_token_expires(guarded: LiveServer) -> None:
    # Expires within about a second (expiry is rounded to whole seconds).
    token = StreamTokens(SECRET, clock=lambda: time.time() - 59.5).issue(60)[0]
    async with guarded.client() as client, client.stream("GET", "/events", params={"token": token}) as stream:
        assert stream.status_code == 200
        with anyio.fail_after(10):
            body = b"".join([chunk async for chunk in stream.aiter_raw()])
    assert body.startswith(b"retry:")


async def test_an_unreadable_tokens_file_stops_the_start_before_postgresql(tmp_path: Path) -> None:
    from sse_batcher.server import create_app

    config = make_config("postgresql://nobody@127.0.0.1:1/none", tmp_path, subscribe_tokens_file=tmp_path / "gone")
    app = create_app(config)
    with pytest.raises(ConfigError, match="subscribe tokens file"):
        async with app.router.lifespan_context(app):
            pass
