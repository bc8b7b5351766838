"""AggregationRules: the rule of every event type, the defaults, and the TOML file (SSE_RULES_FILE).

A rule (:class:`~sse_batcher.batcher.rules.type_rule.TypeRule`) says, for one event type, how long
its events may wait, how they group into messages, and whether the type is digested. A rule's
``timeout_seconds`` is the type's own batch timeout: how long its events may wait in the buffer
before their batch leaves. It is capped by the configured batch timeout, so nothing waits longer
than SSE_BATCH_TIMEOUT_SECONDS.

Defaults, when no rule is given: ``JOB_FAILED`` is never batched (a failure is news now, it must
not wait behind a timeout); ``JOB_PROGRESS`` has an infinite batch timeout, so it waits the full
configured timeout, while the other types follow the adaptive one: when the server is idle and the
timeout shrinks so that a lone ``JOB_STARTED`` leaves in milliseconds, progress still waits and
groups. Critical events bypass batching whatever their type (the buffer and aggregation see to
that). ``JOB_COMPLETED`` and ``JOB_FAILED`` are ``final``: their event closes its key in the latest
state (``sse_batcher.batcher.log.state``); a rule sets ``final = true`` or ``false`` for any type.

The TOML file overrides the defaults field by field::

    [types.JOB_PROGRESS]
    timeout_seconds = inf        # TOML's infinity: the full configured batch timeout
    coalesce = "key"

    [types.NOTIFICATION]
    group_identical = true
    max_group_size = 100

    [types.JOB_STARTED]
    strategy = "conservative"   # wait as that strategy's timeout policy says

    [types.JOB_CANCELLED]
    final = true                # its event closes the job's key in the latest state

``strategy`` names a sizing strategy (:mod:`sse_batcher.batcher.sizing.strategies`) whose timeout
policy the type's batch timeout follows, when the rule sets no ``timeout_seconds`` of its own:
``conservative`` waits the timeout floor, ``balanced`` the geometric mean of floor and configured
timeout, ``fixed`` and ``aggressive`` the configured timeout, while ``adaptive`` and ``learned``
(which move the shared timeout) follow the batcher's. The server resolves it with
:func:`sse_batcher.batcher.sizing.named.pin_rule_timeouts`; batch sizes stay one per batcher, set
by the server's own strategy.

A digest rule sets a digest window, minutes to a day long. A rule with ``digest_seconds`` changes
nothing about how its events are batched, stored or streamed (they still leave within the type's batch
timeout, so nothing waits in memory); on top of that, at the end of each digest window the server
emits one ``T_DIGEST`` message per source (and ``group_by`` value) covering the window.
``max_items`` bounds the events a digest carries (``keep = "newest" | "oldest"``), ``align`` puts
windows on the clock (``"clock"``: 09:00, 09:15, ...) or starts one at the first event
(``"first"``), and ``live = false`` keeps the type's own messages out of the live fan-out (critical
ones still go out). See :mod:`sse_batcher.batcher.digests`::

    [types.APPROVAL_REQUEST]
    digest_seconds = 900
    max_items = 5
    group_by = "user_id"
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["DEFAULT_TYPE_RULES", "AggregationRules"]

# A digest is named T + "_DIGEST" and a type is at most 64 characters.
_MAX_DIGESTED_TYPE_CHARS = 64 - len("_DIGEST")


DEFAULT_TYPE_RULES: Mapping[str, TypeRule] = MappingProxyType(
    {
        "JOB_COMPLETED": TypeRule(final=True),
        "JOB_FAILED": TypeRule(batched=False, final=True),
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
        if self.default.final:
            raise ConfigError("final belongs in [types.NAME], not in [default]: it would close every key at once")
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
        """The digested types and their rules, sorted by name."""
        return self._digests

    def final_types(self) -> frozenset[str]:
        """The types whose event closes its key in the latest state."""
        return frozenset(name for name, rule in self.types.items() if rule.final)

    def timeouts(self, cap_seconds: float) -> dict[str, float]:
        """Each type with its own batch timeout, capped at ``cap_seconds`` (the configured batch timeout)."""
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
