"""``python -m sse_batcher.server``: the ``sse-batcher`` command."""

from __future__ import annotations

import sys

from sse_batcher.server.cli import main

sys.exit(main())
