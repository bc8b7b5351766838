"""POST /api/stream-token: a short-lived, signed read credential for one browser's stream.

Authorised by a publish token: whoever may publish is trusted to hand out read access, and with no
publish token configured nobody is (a stream token would open a closed stream). The token is
signed and checked by :class:`~sse_batcher.server.security.tokens.StreamTokens`; its filters bind
the stream it opens (GET /events narrows within them, never widens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.batcher import EventValidationError
from sse_batcher.batcher.events import check_source, check_type
from sse_batcher.server._http import (
    BodyError,
    check_json_content_type,
    decode_json,
    error,
    json_response,
    publish_token_required,
    read_body,
)
from sse_batcher.server.security.guard import NotAllowed, guard_of

__all__ = ["issue_stream_token"]

_MAX_TOKEN_REQUEST_BYTES: Final = 16 * 1024
_DEFAULT_STREAM_TOKEN_SECONDS: Final = 300.0
_FIELDS: Final = frozenset({"ttl_seconds", "types", "source"})


def _names(body: dict[str, Any], field: str, check: Callable[[object], str]) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise NotAllowed(field, f"{field} must be a name or a non-empty list of names")
    try:
        return [check(name) for name in values]
    except EventValidationError as exc:
        raise NotAllowed(field, f"{field}: {exc}") from None


async def issue_stream_token(request: Request) -> Response:
    """POST /api/stream-token ``{"ttl_seconds"?, "types"?, "source"?}``: 200 ``{"token", "expires_at"}``.

    Answers 401 without a valid publish token, 403 when none is configured, 422 for a bad body
    (an unknown field included, named in ``field``; an empty ``types`` or ``source`` list too).
    """
    guard = guard_of(request)
    if not guard.publish_tokens.required:
        return error(403, "stream tokens are issued only with a publish token configured (SSE_PUBLISH_TOKEN)")
    if guard.publisher(request) is None:
        return publish_token_required()
    try:
        raw = await read_body(request, _MAX_TOKEN_REQUEST_BYTES)
        if raw.strip():
            check_json_content_type(request)
        body = decode_json(raw) if raw.strip() else {}
    except BodyError as exc:
        return error(exc.status, str(exc))
    if not isinstance(body, dict):
        return error(422, "the body must be a JSON object", field="body")
    # A misspelt filter ("sources", "type") ignored would mint a token wider than asked for.
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return error(422, f"unknown field {unknown[0]!r:.60}; the fields are {', '.join(sorted(_FIELDS))}",
                     field=unknown[0])  # fmt: skip
    longest = guard.config.stream_token_max_seconds
    ttl = body.get("ttl_seconds", min(_DEFAULT_STREAM_TOKEN_SECONDS, longest))
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= longest:
        return error(422, f"ttl_seconds must be a number above 0 and at most {longest:g}", field="ttl_seconds")
    try:
        types = _names(body, "types", check_type)
        sources = _names(body, "source", check_source)
    except NotAllowed as exc:
        return error(422, str(exc), field=exc.field)
    token, expires_at = guard.stream_tokens.issue(ttl, types, sources)
    return json_response({"token": token, "expires_at": expires_at}, headers={"Cache-Control": "no-store"})
