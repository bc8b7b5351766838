"""TypeRule: what one rule says about one event type, checked when it is made.

A rule is a value: the rule set (:mod:`~sse_batcher.batcher.rules.rules`) holds one per type, the
pipeline reads its batch timeout and grouping, the digests its digest fields and the sizing its
``strategy``. Its checks live with it, so a bad value is refused wherever a rule is built (a TOML
file, Python code, ``dataclasses.replace``), with a :class:`ConfigError` that names the field.

Fields, by what they change:

- When a type's events leave: ``timeout_seconds`` (the type's own batch timeout), ``strategy``
  (follow a sizing strategy's timeout policy), ``batched = false`` (never wait).
- How a group becomes messages: ``max_group_size``, and two opt-in reductions, ``coalesce = "key"``
  (only the latest event per ``key`` within a flush) and ``group_identical`` (events with the same
  data folded into one entry with a count). Both drop information a consumer might want
  (intermediate progress, individual seqs), so they are off unless a rule turns them on.
- The latest state: ``final = true`` makes an event of the type close its key (the key leaves
  the state when the event is stored); by default ``JOB_COMPLETED`` and ``JOB_FAILED`` are final.
- Digests: ``digest_seconds`` makes the type digested; ``max_items``, ``group_by``, ``align``,
  ``keep`` and ``live`` mean something only then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sse_batcher.batcher.config import STRATEGY_NAMES
from sse_batcher.batcher.errors import ConfigError

__all__ = ["Align", "Coalesce", "Keep", "TypeRule"]

Coalesce = Literal["key"]
Align = Literal["clock", "first"]
Keep = Literal["newest", "oldest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeRule:
    """How events of one type are batched, aggregated and digested.

    ``timeout_seconds`` None follows the batcher's (adaptive) batch timeout. ``digest_seconds`` set
    makes the type digested: ``max_items``, ``group_by``, ``align``, ``keep`` and ``live`` only
    mean something then.

    Raises:
        ConfigError: a value is out of range.
    """

    timeout_seconds: float | None = None
    max_group_size: int | None = None
    batched: bool = True
    coalesce: Coalesce | None = None
    group_identical: bool = False
    strategy: str | None = None
    final: bool = False
    digest_seconds: float | None = None
    max_items: int = 10
    group_by: str | None = None
    align: Align = "clock"
    keep: Keep = "newest"
    live: bool = True

    def __post_init__(self) -> None:
        timeout = self.timeout_seconds
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigError(f"timeout_seconds must be a number > 0, got {timeout!r}")
        size = self.max_group_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"max_group_size must be an integer >= 1, got {size!r}")
        if not isinstance(self.batched, bool):
            raise ConfigError(f"batched must be true or false, got {self.batched!r}")
        if self.coalesce not in (None, "key"):
            raise ConfigError(f'coalesce must be "key" or absent, got {self.coalesce!r}')
        if not isinstance(self.group_identical, bool):
            raise ConfigError(f"group_identical must be true or false, got {self.group_identical!r}")
        if not isinstance(self.final, bool):
            raise ConfigError(f"final must be true or false, got {self.final!r}")
        if self.strategy is not None and self.strategy not in STRATEGY_NAMES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGY_NAMES)}, got {self.strategy!r}")
        self._check_digest()

    def _check_digest(self) -> None:
        digest = self.digest_seconds
        if digest is not None and (
            isinstance(digest, bool) or not isinstance(digest, int | float) or not 1 <= digest < math.inf
        ):
            raise ConfigError(f"digest_seconds must be a number of seconds >= 1, got {digest!r}")
        items = self.max_items
        if isinstance(items, bool) or not isinstance(items, int) or not 1 <= items <= 1000:
            raise ConfigError(f"max_items must be an integer from 1 to 1000, got {items!r}")
        if self.group_by is not None and (not isinstance(self.group_by, str) or not self.group_by):
            raise ConfigError(f"group_by must be a non-empty field name, got {self.group_by!r}")
        if self.align not in ("clock", "first"):
            raise ConfigError(f'align must be "clock" or "first", got {self.align!r}')
        if self.keep not in ("newest", "oldest"):
            raise ConfigError(f'keep must be "newest" or "oldest", got {self.keep!r}')
        if not isinstance(self.live, bool):
            raise ConfigError(f"live must be true or false, got {self.live!r}")
        if not self.live and digest is None:
            # Without a digest, live = false would make the type vanish from every live stream.
            raise ConfigError("live = false needs digest_seconds: only a digested type may skip the live stream")

    @property
    def plain(self) -> bool:
        """True when the rule changes nothing about how a group is aggregated."""
        return self.max_group_size is None and self.coalesce is None and not self.group_identical
