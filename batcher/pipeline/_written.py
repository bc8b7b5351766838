"""Written: what one call of the batch writer did, as the flush loop hands it on.

Apart from ``writer.py`` because the tracker and the flush loop read it too, and the writer module
is about getting batches somewhere, not about describing the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sse_batcher.batcher.events import Message, StoredMessage
from sse_batcher.batcher.protocols import Rejected

__all__ = ["Written"]


@dataclass(slots=True)
class Written:
    """What one call of the writer did, in commit (id) order.

    ``stored`` are committed messages (new, or found already stored by an earlier attempt);
    ``messages`` the batches' messages they came from (to map seqs to ids); ``kept`` messages went to
    the dead-letter file (durable, to be stored later); ``rejected`` PostgreSQL refused for good.
    A batch the writer holds in memory (the file refused it too) is in none of them until it is
    stored or kept, by a later call.
    """

    stored: list[StoredMessage] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    kept: list[Message] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def extend(self, other: Written) -> None:
        self.stored.extend(other.stored)
        self.messages.extend(other.messages)
        self.kept.extend(other.kept)
        self.rejected.extend(other.rejected)
