"""The ``Host`` check: a page served under a rebound DNS name reaches nothing here.

DNS rebinding: a page on ``attacker.example`` has its name re-pointed at 127.0.0.1, and the browser,
seeing one origin, lets the page read and write a local server. The one thing it cannot change is
the ``Host`` header, which still says ``attacker.example``. So every request must name a host this
server answers to, else 400 (JSON) before any endpoint runs:

- ``localhost``, and any IP address literal (``127.0.0.1``, ``[::1]``, ``192.0.2.7``): a rebound page
  always sends its own name, never a literal, so these are safe to serve whatever the bind address;
- the bound host (``SSE_HOST``) when it is a name;
- every entry of ``SSE_ALLOWED_HOSTS``: a name, or ``*.example.com`` for its subdomains; ``*`` turns
  the check off (a proxy in front that checks ``Host`` itself).

A request with no ``Host`` (HTTP/1.0) passes: browsers always send one. Ports are not compared (the
socket already chose the server).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from sse_batcher.server._http import error
from sse_batcher.server.security.middleware import add_security_headers

__all__ = ["HostCheckMiddleware", "allowed_hosts", "host_allowed"]

_ALWAYS: Final = frozenset({"localhost"})
_WILDCARD_BINDS: Final = frozenset({"", "0.0.0.0", "::"})


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(configured: Iterable[str], bound_host: str) -> tuple[str, ...]:
    """The names to serve besides ``localhost`` and address literals: ``configured`` and a named bound host."""
    names = [*configured]
    bound = bound_host.strip("[]").lower()
    if bound not in _WILDCARD_BINDS and not _is_address(bound):
        names.append(bound)
    return tuple(dict.fromkeys(names))


def _host_name(header: str) -> str | None:
    """The host of a ``Host`` header without its port, lower-cased; None when it is malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return inside if _is_address(inside) else None
    name, colon, port = value.rpartition(":")
    if not colon:
        name = value
    elif not port.isdigit() or ":" in name:
        return None
    return name.removesuffix(".") or None


def host_allowed(header: str | None, allowed: Collection[str]) -> bool:
    """Whether a request with ``Host: header`` is served, given :func:`allowed_hosts`'s names."""
    if header is None or "*" in allowed:
        return True
    name = _host_name(header)
    if name is None:
        return False
    if name in _ALWAYS or _is_address(name) or name in allowed:
        return True
    return any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in allowed)


class HostCheckMiddleware:
    """Answers 400 ``{"error", "field": "Host"}`` to a request whose ``Host`` this server does not serve."""

    def __init__(self, app: ASGIApp, allowed: Collection[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        response = error(400, f"Host {host!r:.80} is not served here; list it in SSE_ALLOWED_HOSTS", field="Host")
        await add_security_headers(response)(scope, receive, send)  # it stands outside the headers middleware
