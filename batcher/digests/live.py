"""The live fan-out filter of ``live = false``: a digested type's own messages stay out of live streams.

The messages are still stored, so their digest covers them; only the hub, which the server gives
this filter, holds them back from live streams. Critical events always go out: they bypass
digests, as they bypass batching. Apart from the windows because the digester never uses it: it is
the server's half of a digest rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import msgspec

from sse_batcher.batcher.events import CRITICAL, NORMAL, StoredMessage
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["quiet_filter"]


class _Priority(msgspec.Struct, gc=False):
    priority: str = NORMAL


_PRIORITY_DECODER: Final = msgspec.json.Decoder(_Priority)


def quiet_filter(rules: Mapping[str, TypeRule]) -> Callable[[StoredMessage], bool] | None:
    """A test for messages to keep out of the live fan-out (``live = false``); None when there are none.

    A critical event always travels alone, so only single messages are looked into.
    """
    quiet = frozenset(name for name, rule in rules.items() if not rule.live)
    if not quiet:
        return None

    def is_quiet(message: StoredMessage) -> bool:
        if message.event_type not in quiet:
            return False
        if message.type != message.event_type:
            return True  # an aggregate: never holds a critical event
        try:
            return _PRIORITY_DECODER.decode(message.payload).priority != CRITICAL
        except msgspec.DecodeError:
            return True

    return is_quiet
