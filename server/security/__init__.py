"""What a public endpoint needs: response headers, CORS, tokens and limits.

Enters: a request's address and credentials (bearer tokens, signed stream tokens).
Inside: :class:`Guard` answers the endpoints (may this request publish, subscribe, open another
stream?) from :mod:`.tokens` and :mod:`.ratelimit`; the :mod:`.middleware` adds the security
headers and CORS to every answer, and :mod:`.hosts` refuses a ``Host`` the server does not serve.
Leaves: a yes, or a refusal the endpoint turns into a 401, 403 or 429.
Next: the endpoints of :mod:`sse_batcher.server.app`, which ask before they act.
"""

from __future__ import annotations

from sse_batcher.server.security.guard import Guard, NotAllowed
from sse_batcher.server.security.hosts import HostCheckMiddleware
from sse_batcher.server.security.middleware import CORSMiddleware, SecurityHeadersMiddleware
from sse_batcher.server.security.ratelimit import ConnectionCounter, RateLimiter
from sse_batcher.server.security.tokens import StreamTokens, TokenSet

__all__ = [
    "CORSMiddleware",
    "ConnectionCounter",
    "Guard",
    "HostCheckMiddleware",
    "NotAllowed",
    "RateLimiter",
    "SecurityHeadersMiddleware",
    "StreamTokens",
    "TokenSet",
]
