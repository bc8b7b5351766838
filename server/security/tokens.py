"""Credentials: sets of bearer tokens (rotated through a file), and short-lived signed stream tokens.

:class:`TokenSet` is the tokens one endpoint accepts: the single token of ``SSE_PUBLISH_TOKEN`` or
``SSE_SUBSCRIBE_TOKEN``, plus every line of a tokens file. The file is re-read when it changes
(looked at no more than once per ``check_interval_seconds``, on the request path, so no task runs for
it), which rotates a token without a restart: add the new one, move the clients, remove the old one.
A file that cannot be read, or reads as empty (a half-written rewrite), keeps the last good set, with
a warning. Every presented token is compared with every accepted one, as SHA-256 digests, in constant
time: the answer's timing says neither which token nearly matched nor how long they are.

:class:`StreamTokens` signs and checks stream tokens: ``sst1.<payload>.<mac>``, where the payload is
base64url JSON ``{"exp", "types", "sources"}`` and the mac its HMAC-SHA256. A browser is handed one by
a backend that holds a publish token, and subscribes with ``?token=``; the token's filters bound what
it can read. Expiry is wall time (``exp``, Unix seconds), since a token crosses processes and nodes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from sse_batcher.batcher import ConfigError

__all__ = ["STREAM_TOKEN_PREFIX", "InvalidStreamToken", "StreamGrant", "StreamTokens", "TokenSet", "parse_tokens"]

logger = logging.getLogger(__name__)

STREAM_TOKEN_PREFIX: Final = "sst1."
# A tokens file is a few lines; anything much bigger is a wrong path, not a token list.
_MAX_FILE_BYTES: Final = 1024 * 1024


def parse_tokens(text: str) -> list[str]:
    """The tokens of a tokens file: one a line, surrounding blanks stripped, ``#`` lines and blank lines skipped."""
    tokens = []
    for line in text.splitlines():
        token = line.strip()
        if token and not token.startswith("#"):
            tokens.append(token)
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenSet:
    """The bearer tokens one endpoint accepts; :attr:`required` is False when none is configured.

    Raises:
        ConfigError: ``file`` cannot be read when the set is made (later failures keep the last set).
    """

    def __init__(
        self,
        name: str,
        token: str | None = None,
        file: Path | None = None,
        *,
        check_interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.file = file
        self._fixed = () if token is None else (_digest(token),)
        self._from_file: tuple[bytes, ...] = ()
        self._interval = check_interval_seconds
        self._clock = clock
        self._checked = clock()
        self._seen: bytes | None = None
        self._generation = 0
        if file is not None:
            try:
                self._read(file)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ConfigError(f"the {name} tokens file {file} cannot be read: {exc}") from None

    @property
    def required(self) -> bool:
        """Whether the endpoint is closed: a token or a tokens file is configured (even an empty one)."""
        return bool(self._fixed) or self.file is not None

    def __len__(self) -> int:
        """Tokens accepted now."""
        self._refresh()
        return len(self._fixed) + len(self._from_file)

    def generation(self) -> int:
        """A number that changes whenever the accepted tokens change (the file is looked at first, as by
        :meth:`matches`): a holder of a past answer asks again only when it moved."""
        self._refresh()
        return self._generation

    def matches(self, given: str) -> bool:
        """Whether ``given`` is one of the tokens; compares with every one of them, in constant time."""
        self._refresh()
        presented = _digest(given)
        found = False
        for expected in self._fixed + self._from_file:
            # No short cut: every comparison runs, whichever matched.
            found |= hmac.compare_digest(presented, expected)
        return found

    def reload(self) -> bool:
        """Re-read the file now; False (and a warning) when it failed and the last good set stays."""
        if self.file is None:
            return True
        self._checked = self._clock()
        try:
            self._read(self.file)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("kept the last %d %s tokens: %s cannot be read: %s", len(self._from_file), self.name,
                           self.file, exc)  # fmt: skip
            return False
        return True

    def _refresh(self) -> None:
        if self.file is not None and self._clock() - self._checked >= self._interval:
            self.reload()

    def _read(self, file: Path) -> None:
        with file.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
        if len(raw) > _MAX_FILE_BYTES:
            raise ValueError(f"it is over {_MAX_FILE_BYTES} bytes")
        if raw == self._seen:
            return
        tokens = parse_tokens(raw.decode())
        if not tokens and self._seen is not None:
            # A writer that truncates then writes leaves an empty file for a moment; locking
            # every client out for it would be worse than keeping the tokens a moment longer.
            raise ValueError("it holds no token (to revoke them all, leave one random token in it)")
        self._from_file = tuple(_digest(token) for token in dict.fromkeys(tokens))
        self._generation += 1
        if self._seen is not None:
            logger.info("reloaded %d %s tokens from %s", len(self._from_file), self.name, file)
        self._seen = raw


class InvalidStreamToken(ValueError):
    """A stream token is malformed, its signature is wrong, or it has expired."""


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a valid stream token allows: streams until ``expires_at`` (Unix seconds), within its filters.

    ``types`` and ``sources`` are None when the token does not restrict them; an empty set matches
    nothing (it is never read as "no filter").
    """

    expires_at: float
    types: frozenset[str] | None = None
    sources: frozenset[str] | None = None


class _Payload(msgspec.Struct, forbid_unknown_fields=True):
    exp: int
    types: list[str] | None = None
    sources: list[str] | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Signs and checks stream tokens with HMAC-SHA256 under ``secret`` (random when None).

    ``clock`` is the wall clock (expiry is data that crosses nodes, not a local schedule).
    """

    def __init__(self, secret: str | None, *, clock: Callable[[], float] = time.time) -> None:
        # A random key means tokens die with the process and are unknown to other nodes.
        self._key = secret.encode() if secret is not None else secrets.token_bytes(32)
        self._clock = clock

    def issue(
        self, ttl_seconds: float, types: Iterable[str] | None = None, sources: Iterable[str] | None = None
    ) -> tuple[str, int]:
        """A token valid for ``ttl_seconds`` (rounded up to a whole second) and its expiry in Unix seconds.

        ``types`` or ``sources`` None leaves that filter open; an empty one would match nothing.

        Raises:
            ValueError: ``types`` or ``sources`` is empty (a token that can read nothing is a mistake).
        """
        types = None if types is None else list(types)
        sources = None if sources is None else list(sources)
        if types == [] or sources == []:
            raise ValueError("a stream token's types and sources are None (any) or a non-empty list, never empty")
        expires_at = math.ceil(self._clock() + ttl_seconds)
        payload = _Payload(
            exp=expires_at,
            types=sorted(set(types)) if types is not None else None,
            sources=sorted(set(sources)) if sources is not None else None,
        )
        body = _b64(msgspec.json.encode(payload))
        return f"{STREAM_TOKEN_PREFIX}{body}.{self._mac(body)}", expires_at

    def verify(self, token: str) -> StreamGrant:
        """The grant of a valid token.

        Raises:
            InvalidStreamToken: malformed, tampered with, signed under another key, or expired.
        """
        if not token.startswith(STREAM_TOKEN_PREFIX):
            raise InvalidStreamToken("not a stream token")
        body, dot, mac = token[len(STREAM_TOKEN_PREFIX) :].partition(".")
        # The signature is checked before the payload is even decoded.
        if not dot or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise InvalidStreamToken("the stream token's signature is wrong")
        try:
            payload = msgspec.json.decode(_unb64(body), type=_Payload)
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise InvalidStreamToken("the stream token is malformed") from None
        if payload.exp <= self._clock():
            raise InvalidStreamToken("the stream token has expired")
        return StreamGrant(
            expires_at=float(payload.exp),
            types=frozenset(payload.types) if payload.types is not None else None,
            sources=frozenset(payload.sources) if payload.sources is not None else None,
        )

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
