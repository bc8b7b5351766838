"""ServerLoadMonitor: what the machine and this process are going through, sampled in the background.

psutil gives the system and process CPU, memory and load average; they lag, and they are shared
with every other process on the machine, so the monitor also measures two things no other
process can disturb: how late the event loop runs a scheduled wake-up (loop lag), and how many
events wait in the batcher (backlog). The sizing policy reads all of them; the dashboard shows
them.

Sampling never blocks the loop: psutil runs in a worker thread (its calls are cheap, but a
sampler that hangs must not stall the flush). A sample that fails is logged and counted, the
last good figures are kept for the dashboard, and :attr:`ServerLoadMonitor.healthy` turns False
so the sizing policy falls back to the configured batch size instead of steering blind.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import anyio
import psutil

from sse_batcher import constants
from sse_batcher.batcher._background import BackgroundTask
from sse_batcher.batcher.config import require_positive
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.lifecycle import Service, State

__all__ = [
    "EMPTY_LOAD",
    "LoadMonitorConfig",
    "LoadMonitorStats",
    "LoadSample",
    "ServerLoadMonitor",
    "SystemLoad",
    "psutil_sampler",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemLoad:
    """What psutil reports; ``process_cpu_percent`` is a share of the whole machine (0-100).

    ``sse_batcher.server_cpu_percent`` is the same process CPU as a share of one core (a Python server uses at
    most about one), None when the sampler cannot tell.
    """

    cpu_percent: float
    process_cpu_percent: float
    memory_percent: float
    load_per_core: float
    server_cpu_percent: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSample:
    """One sample: the system figures, the loop lag and the backlog, at monotonic time ``taken_at``."""

    cpu_percent: float
    process_cpu_percent: float
    memory_percent: float
    load_per_core: float
    loop_lag_seconds: float
    backlog: int
    taken_at: float
    # This server process's CPU as a share of ONE core (0-100): what the strategies steer by, when
    # known. The host's CPU is shared with every other process on the machine: on a busy host an
    # idle server would otherwise wait out the full batch timeout for nothing (see bench/RESULTS.md,
    # "Lone event on an idle server"). Starvation by others still shows, as loop lag.
    server_cpu_percent: float | None = None

    @property
    def pressure(self) -> float:
        """The CPU percent the sizing strategies steer by: the server's own, else the host's."""
        return self.cpu_percent if self.server_cpu_percent is None else self.server_cpu_percent

    def as_dict(self) -> dict[str, Any]:
        """Return the figures in the shape of ``/api/stats`` ``sizing.load``."""
        return {
            "cpu_percent": round(self.cpu_percent, 1),
            "process_cpu_percent": round(self.process_cpu_percent, 1),
            "server_cpu_percent": None if self.server_cpu_percent is None else round(self.server_cpu_percent, 1),
            "memory_percent": round(self.memory_percent, 1),
            "load_per_core": round(self.load_per_core, 3),
            "loop_lag_ms": round(self.loop_lag_seconds * 1000.0, 2),
            "backlog": self.backlog,
        }


# The shape of LoadSample.as_dict() before the first sample: every figure unknown.
EMPTY_LOAD: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "cpu_percent": None,
        "process_cpu_percent": None,
        "server_cpu_percent": None,
        "memory_percent": None,
        "load_per_core": None,
        "loop_lag_ms": None,
        "backlog": None,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadMonitorConfig:
    """How often the monitor samples, and how old a sample may get before it no longer counts.

    Raises:
        ConfigError: a value is out of range.
    """

    sample_seconds: float = field(default_factory=lambda: constants.SSE_LOAD_SAMPLE_SECONDS)
    stale_after_samples: int = 3

    def __post_init__(self) -> None:
        require_positive("sample_seconds", self.sample_seconds)
        if self.stale_after_samples < 1:
            raise ConfigError(f"stale_after_samples must be >= 1, got {self.stale_after_samples!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadMonitorStats:
    """Counters of the monitor and its latest good sample (None before the first)."""

    state: str
    healthy: bool
    samples: int
    failures: int
    latest: LoadSample | None


def psutil_sampler() -> Callable[[], SystemLoad]:
    """Return a sampler over psutil's non-blocking calls, primed so its first CPU figure means something.

    ``cpu_percent(interval=None)`` reports the CPU used since the previous call, so the first
    call only starts the clock; the sampler makes it here.
    """
    process = psutil.Process()
    cores = psutil.cpu_count() or 1
    process.cpu_percent(interval=None)
    # Host CPU from our own cpu_times() deltas: psutil.cpu_percent(interval=None) keeps its last
    # reading in module state, so any other caller in the process would shorten our interval.
    last = psutil.cpu_times()

    def host_cpu_percent() -> float:
        nonlocal last
        now = psutil.cpu_times()
        busy = sum(now) - now.idle - getattr(now, "iowait", 0.0)
        busy_before = sum(last) - last.idle - getattr(last, "iowait", 0.0)
        total = sum(now) - sum(last)
        last = now
        return 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * (busy - busy_before) / total))

    def sample() -> SystemLoad:
        process_percent = float(process.cpu_percent(interval=None))  # of one core; >100 with threads
        return SystemLoad(
            cpu_percent=host_cpu_percent(),
            process_cpu_percent=process_percent / cores,
            server_cpu_percent=min(100.0, process_percent),
            memory_percent=float(psutil.virtual_memory().percent),
            load_per_core=float(psutil.getloadavg()[0]) / cores,
        )

    return sample


class ServerLoadMonitor(Service):
    """Sample load every ``sample_seconds`` in a background task; read the latest with :meth:`latest`.

    Use as ``async with ServerLoadMonitor(config, backlog=lambda: batcher.backlog) as monitor:``.
    ``sampler`` (default: psutil) and ``clock`` (default: ``time.monotonic``) are for tests.
    """

    def __init__(
        self,
        config: LoadMonitorConfig | None = None,
        *,
        backlog: Callable[[], int] | None = None,
        sampler: Callable[[], SystemLoad] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config or LoadMonitorConfig()
        self._backlog = backlog or (lambda: 0)
        self._sampler = sampler
        self._clock = clock
        self._state = State.NEW
        self._task = BackgroundTask()
        self._latest: LoadSample | None = None
        self._last_ok = False
        self._samples = 0
        self._failures = 0
        self._lag = 0.0

    @property
    def config(self) -> LoadMonitorConfig:
        return self._config

    @property
    def healthy(self) -> bool:
        """True when the last sample succeeded and is recent enough to steer by."""
        latest = self._latest
        if not self._last_ok or latest is None:
            return False
        max_age = self._config.sample_seconds * self._config.stale_after_samples
        return self._clock() - latest.taken_at <= max_age

    def latest(self) -> LoadSample | None:
        """The last good sample (kept while sampling fails), None before the first."""
        return self._latest

    async def sample(self) -> LoadSample | None:
        """Take one sample now; on failure log it, keep the last good one and return None."""
        sampler = self._sampler
        try:
            if sampler is None:
                sampler = self._sampler = await anyio.to_thread.run_sync(psutil_sampler)
            system = await anyio.to_thread.run_sync(sampler)
            backlog = self._backlog()
        except Exception as exc:
            self._failures += 1
            # A failure streak is logged once at warning level, not once a second.
            log = logger.warning if self._last_ok or self._failures == 1 else logger.debug
            log("load sample failed; keeping the last good figures: %r", exc)
            self._last_ok = False
            return None
        self._samples += 1
        self._last_ok = True
        self._latest = LoadSample(
            cpu_percent=system.cpu_percent,
            process_cpu_percent=system.process_cpu_percent,
            memory_percent=system.memory_percent,
            load_per_core=system.load_per_core,
            loop_lag_seconds=self._lag,
            backlog=backlog,
            taken_at=self._clock(),
            server_cpu_percent=system.server_cpu_percent,
        )
        return self._latest

    async def start(self) -> None:
        """Start sampling in the background.

        Raises:
            BatcherClosedError: already started or closed.
        """
        self._begin_start()
        await self._task.start(self._run)

    async def aclose(self) -> None:
        """Stop sampling. Idempotent."""
        if not self._begin_close():
            return
        await self._task.aclose()

    async def _run(self) -> None:
        interval = self._config.sample_seconds
        while True:
            # The loop lag is how much later than asked this sleep ends: time the loop spent busy
            # with other callbacks. Measured here, with the monotonic clock, not by psutil.
            asked = time.monotonic()
            await anyio.sleep(interval)
            self._lag = max(0.0, time.monotonic() - asked - interval)
            await self.sample()

    def statistics(self) -> LoadMonitorStats:
        """Return a frozen snapshot."""
        return LoadMonitorStats(
            state=self._state.value,
            healthy=self.healthy,
            samples=self._samples,
            failures=self._failures,
            latest=self._latest,
        )

    def __del__(self) -> None:
        if self._state is State.RUNNING:
            warnings.warn(f"unclosed {self.__class__.__name__}", ResourceWarning, stacklevel=1, source=self)
