"""Per-type aggregation rules, set in Python or read from a TOML file (SSE_RULES_FILE).

A rule says, for one event type, how long its events may wait (``timeout_seconds``), how many go
into one aggregate (``max_group_size``), whether the type is batched at all, and two opt-in
reductions: ``coalesce = "key"`` keeps only the latest event per ``key`` within a flush, and
``group_identical`` folds events with the same data into one entry with a count. Both reductions
drop information a consumer might want (intermediate progress, individual seqs), so they are off
unless a rule turns them on.

Defaults, when no rule is given: ``JOB_FAILED`` is never batched (a failure is news now, it must
not wait behind a timeout); ``JOB_PROGRESS`` has an infinite window, capped to the configured
timeout, while the other types follow the adaptive one: when the server is idle and the timeout
shrinks so that a lone ``JOB_STARTED`` leaves in milliseconds, progress still waits and groups.
Critical events bypass batching whatever their type (the buffer and aggregation see to that). A
window is capped by the configured batch timeout: nothing waits longer than
SSE_BATCH_TIMEOUT_SECONDS.

The TOML file overrides the defaults field by field::

    [types.JOB_PROGRESS]
    timeout_seconds = inf        # TOML's infinity: the full configured timeout
    coalesce = "key"

    [types.NOTIFICATION]
    group_identical = true
    max_group_size = 100

    [types.JOB_STARTED]
    strategy = "conservative"   # wait as that strategy's timeout policy says (issue 12)

``strategy`` names a sizing strategy (``sse_batcher.batcher.sizing.strategies``) whose timeout policy the type's
window follows, when the rule sets no ``timeout_seconds`` of its own: ``conservative`` waits the
timeout floor, ``balanced`` the geometric mean of floor and configured timeout, ``fixed`` and
``aggressive`` the configured timeout, while ``adaptive`` and ``learned`` (which move the shared
timeout) follow the batcher's. The server resolves it with ``sse_batcher.batcher.sizing.named.pin_rule_timeouts``;
batch sizes stay one per batcher, set by the server's own strategy.

Digest rules (issue 14) are the long windows, minutes to a day. A rule with ``digest_seconds``
changes nothing about how its events are batched, stored or streamed (they still leave within the
short window above, so nothing waits in memory); on top of that, at the end of each digest window
the server emits one ``T_DIGEST`` message per source (and ``group_by`` value) covering the window.
``max_items`` bounds the events a digest carries (``keep = "newest" | "oldest"``), ``align`` puts
windows on the clock (``"clock"``: 09:00, 09:15, ...) or starts one at the first event (``"first"``),
and ``live = false`` keeps the type's own messages out of the live fan-out (critical ones still go
out). See ``digest.py`` and ``digester.py``::

    [types.APPROVAL_REQUEST]
    digest_seconds = 900
    max_items = 5
    group_by = "user_id"
"""

from __future__ import annotations

import math
import tomllib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from sse_batcher.batcher.config import STRATEGY_NAMES
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.events import Event

__all__ = ["DEFAULT_TYPE_RULES", "AggregationRules", "GroupPart", "TypeRule", "DeadlineClock", "shape_group"]

Coalesce = Literal["key"]
Align = Literal["clock", "first"]
Keep = Literal["newest", "oldest"]

# A digest is named T + "_DIGEST" and a type is at most 64 characters.
_MAX_DIGESTED_TYPE_CHARS = 64 - len("_DIGEST")


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeRule:
    """How events of one type are batched.

    ``timeout_seconds`` None follows the batcher's (adaptive) batch timeout. ``digest_seconds`` set
    makes the type digested (issue 14): ``max_items``, ``group_by``, ``align``, ``keep`` and
    ``live`` only mean something then.

    Raises:
        ConfigError: a value is out of range.
    """

    timeout_seconds: float | None = None
    max_group_size: int | None = None
    batched: bool = True
    coalesce: Coalesce | None = None
    group_identical: bool = False
    strategy: str | None = None
    digest_seconds: float | None = None
    max_items: int = 10
    group_by: str | None = None
    align: Align = "clock"
    keep: Keep = "newest"
    live: bool = True

    def __post_init__(self) -> None:
        window = self.timeout_seconds
        if window is not None and (isinstance(window, bool) or not isinstance(window, int | float) or not window > 0):
            raise ConfigError(f"timeout_seconds must be a number > 0, got {window!r}")
        size = self.max_group_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"max_group_size must be an integer >= 1, got {size!r}")
        if not isinstance(self.batched, bool):
            raise ConfigError(f"batched must be true or false, got {self.batched!r}")
        if self.coalesce not in (None, "key"):
            raise ConfigError(f'coalesce must be "key" or absent, got {self.coalesce!r}')
        if not isinstance(self.group_identical, bool):
            raise ConfigError(f"group_identical must be true or false, got {self.group_identical!r}")
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


DEFAULT_TYPE_RULES: Mapping[str, TypeRule] = MappingProxyType(
    {
        "JOB_FAILED": TypeRule(batched=False),
        "JOB_PROGRESS": TypeRule(timeout_seconds=math.inf),
    }
)

_RULE_FIELDS = frozenset(f.name for f in fields(TypeRule))


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregationRules:
    """The rules of every type; a type without one gets ``default``.

    Raises:
        ConfigError: a type name or rule is invalid.
    """

    types: Mapping[str, TypeRule] = field(default_factory=lambda: DEFAULT_TYPE_RULES)
    default: TypeRule = field(default_factory=TypeRule)
    # Derived once: the flush path asks for them on every flush.
    _unbatched: frozenset[str] = field(init=False, repr=False, compare=False)
    _plain: bool = field(init=False, repr=False, compare=False)
    _digests: Mapping[str, TypeRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, rule in self.types.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"rule type names must be non-empty strings, got {name!r}")
            if not isinstance(rule, TypeRule):
                raise ConfigError(f"the rule for {name} must be a TypeRule, got {type(rule).__name__}")
        if not self.default.batched:
            raise ConfigError("the default rule must be batched; SSE_BATCHING_ENABLED=false turns batching off")
        if self.default.digest_seconds is not None or not self.default.live:
            raise ConfigError("digest_seconds and live belong in [types.NAME], not in [default]")
        for name, rule in self.types.items():
            if rule.digest_seconds is not None and len(name) > _MAX_DIGESTED_TYPE_CHARS:
                raise ConfigError(f"{name} is too long to be digested: {name}_DIGEST would pass 64 characters")
        # Frozen in fact as well as in name: the batcher reads these from the flush loop.
        object.__setattr__(self, "types", MappingProxyType(dict(self.types)))
        object.__setattr__(self, "_unbatched", frozenset(n for n, r in self.types.items() if not r.batched))
        object.__setattr__(self, "_plain", self.default.plain and all(r.plain for r in self.types.values()))
        digests = {n: r for n, r in sorted(self.types.items()) if r.digest_seconds is not None}
        object.__setattr__(self, "_digests", MappingProxyType(digests))

    def rule(self, event_type: str) -> TypeRule:
        """Return the rule for ``event_type``."""
        return self.types.get(event_type, self.default)

    def unbatched_types(self) -> frozenset[str]:
        """The types whose events always travel alone and leave at once."""
        return self._unbatched

    def digests(self) -> Mapping[str, TypeRule]:
        """The digested types (issue 14) and their rules, sorted by name."""
        return self._digests

    def timeouts(self, cap_seconds: float) -> dict[str, float]:
        """Each type with its own timeout, capped at ``cap_seconds`` (the configured timeout)."""
        return {
            name: min(rule.timeout_seconds, cap_seconds)
            for name, rule in self.types.items()
            if rule.timeout_seconds is not None and rule.batched
        }

    @property
    def plain(self) -> bool:
        """True when no rule changes how groups are aggregated (the fast path)."""
        return self._plain

    def merged(self, overrides: Mapping[str, Any]) -> AggregationRules:
        """Return these rules with ``{"default": {...}, "types": {TYPE: {...}}}`` applied field by field.

        Raises:
            ConfigError: an unknown section or field, or a value out of range.
        """
        unknown = set(overrides) - {"default", "types"}
        if unknown:
            raise ConfigError(f"unknown rules section {sorted(unknown)[0]!r}; expected [default] or [types.NAME]")
        default = _apply(self.default, overrides.get("default", {}), "default")
        types = dict(self.types)
        sections = overrides.get("types", {})
        if not isinstance(sections, Mapping):
            raise ConfigError("[types] must be a table of [types.NAME] tables")
        for name, values in sections.items():
            types[name] = _apply(types.get(name, default), values, f"types.{name}")
        return AggregationRules(types=types, default=default)

    @classmethod
    def from_toml(cls, path: str | Path, *, base: AggregationRules | None = None) -> AggregationRules:
        """Read rules from a TOML file, over ``base`` (the defaults when omitted).

        Raises:
            ConfigError: the file cannot be read, is not TOML, or holds an invalid rule (named).
        """
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read rules file {path}: {exc}") from None
        try:
            return (base or cls()).merged(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _apply(rule: TypeRule, values: object, where: str) -> TypeRule:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table")
    unknown = set(values) - _RULE_FIELDS
    if unknown:
        known = ", ".join(sorted(_RULE_FIELDS))
        raise ConfigError(f"[{where}] has unknown field {sorted(unknown)[0]!r}; known: {known}")
    try:
        return replace(rule, **values)
    except ConfigError as exc:
        raise ConfigError(f"[{where}] {exc}") from None


@dataclass(frozen=True, slots=True)
class GroupPart:
    """One message's worth of a group after its rule: the events kept, their counts, what was dropped."""

    events: list[Event]
    counts: list[int] | None
    superseded: int

    @property
    def event_count(self) -> int:
        """How many original events this part stands for (superseded ones excluded)."""
        return len(self.events) if self.counts is None else sum(self.counts)


def shape_group(events: list[Event], rule: TypeRule) -> list[GroupPart]:
    """Apply ``rule`` to the events of one ``(source, type)`` group of one flush, in seq order.

    Key coalescing keeps each key's latest event, where it stood; events without a key are all
    kept. Identical grouping then folds events with byte-identical data into the first of them,
    with a count. Last, the group is cut into parts of at most ``max_group_size``; the superseded
    count goes with the first part, so it is reported once.
    """
    superseded = 0
    if rule.coalesce == "key":
        latest = {event.key: index for index, event in enumerate(events) if event.key is not None}
        kept = [event for index, event in enumerate(events) if event.key is None or latest[event.key] == index]
        superseded = len(events) - len(kept)
        events = kept
    counts: list[int] | None = None
    if rule.group_identical:
        first_of: dict[bytes, int] = {}
        unique: list[Event] = []
        counts = []
        for event in events:
            data = bytes(event.data)
            index = first_of.get(data)
            if index is None:
                first_of[data] = len(unique)
                unique.append(event)
                counts.append(1)
            else:
                counts[index] += 1
        events = unique
    size = rule.max_group_size or len(events) or 1
    return [
        GroupPart(events[i : i + size], None if counts is None else counts[i : i + size], superseded if i == 0 else 0)
        for i in range(0, len(events), size)
    ]


class DeadlineClock:
    """The earliest deadline among buffered events, when some types have windows of their own.

    Events of one window class (one window value, or ``None`` for the batch timeout) are queued
    in seq order, so each class's earliest deadline is its head: :meth:`add` is O(1) and
    :meth:`drop_through` amortised O(1) per event, whatever the buffer holds. Its methods are
    called under the buffer's lock.
    """

    __slots__ = ("_windows", "_queues")

    def __init__(self, windows: Mapping[str, float]) -> None:
        self._windows = dict(windows)
        self._queues: dict[float | None, deque[tuple[int, float]]] = {}

    def add(self, event_type: str, seq: int, ts: float) -> bool:
        """Record an event; True when its class was empty, so the earliest deadline may have moved."""
        window = self._windows.get(event_type)
        queue = self._queues.get(window)
        if queue is None:
            queue = self._queues[window] = deque()
        queue.append((seq, ts))
        return len(queue) == 1

    def drop_through(self, seq: int) -> None:
        """Forget every event with seq <= ``seq`` (they were taken from the buffer's head)."""
        for queue in self._queues.values():
            while queue and queue[0][0] <= seq:
                queue.popleft()

    def next_deadline(self, timeout_seconds: float) -> float | None:
        """When the first waiting event is due; None when none waits."""
        earliest = math.inf
        for window, queue in self._queues.items():
            if queue:
                earliest = min(earliest, queue[0][1] + (timeout_seconds if window is None else window))
        return None if earliest == math.inf else earliest
