"""POST /api/stream-token (``server/app/stream_token.py``): only a publish token mints, with a bounded lifetime."""

from __future__ import annotations

import time

import pytest

from tests.server.live import LiveServer
from tests.server.security.test_tokens import PUB


async def test_minting_needs_a_publish_token_and_a_bounded_ttl(guarded: LiveServer) -> None:
    async with guarded.client() as client:
        anonymous = await client.post("/api/stream-token", json={})
        subscriber = await client.post("/api/stream-token", json={}, headers={"Authorization": "Bearer sub"})
        too_long = await client.post("/api/stream-token", json={"ttl_seconds": 601}, headers=PUB)
        bad_type = await client.post("/api/stream-token", json={"types": ["no spaces"]}, headers=PUB)
        no_body = await client.post("/api/stream-token", headers=PUB)
    assert anonymous.status_code == subscriber.status_code == 401
    assert too_long.status_code == 422 and too_long.json()["field"] == "ttl_seconds"
    assert bad_type.status_code == 422 and bad_type.json()["field"] == "types"
    assert no_body.status_code == 200 and no_body.json()["expires_at"] <= time.time() + 301


async def test_without_a_publish_token_nobody_can_mint_stream_tokens(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/stream-token", json={})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [({"sources": ["web"]}, "sources"), ({"type": "A"}, "type"), ({"types": ["A"], "ttl": 5}, "ttl")],
    ids=["sources", "type", "ttl"],
)
async def test_an_unknown_field_is_a_422_naming_it_and_mints_nothing(
    guarded: LiveServer, body: dict[str, object], field: str
) -> None:
    async with guarded.client() as client:
        response = await client.post("/api/stream-token", json=body, headers=PUB)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and "token" not in response.json()
