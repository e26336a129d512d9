"""Event-loop lag: how late a periodic timer wakes up.

A task sleeps ``interval`` and measures how much later than asked it ran. Anything that
blocks the loop (a heavy computation, a sync file write) shows up here at once. Samples
are kept in a bounded ring so percentiles describe the last minute or so; a cumulative
histogram of every sample since start feeds the Prometheus endpoint.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass

import anyio
import numpy as np
from anyio.abc import TaskStatus

LAG_INTERVAL_S = 0.01
LAG_SAMPLES = 6000  # ~1 minute at the default interval
# Upper bounds (seconds) of the cumulative histogram exported as forexd_loop_lag_seconds.
LAG_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True, slots=True)
class LagHistogram:
    """Every sample since start, in Prometheus form (cumulative, never decreasing).

    Attributes:
        bounds_s: bucket upper bounds in seconds (``+Inf`` implied).
        cumulative: samples ``<= bound`` for each bound, then the total for ``+Inf``.
        sum_s: sum of all samples in seconds.
    """

    bounds_s: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum_s: float

    @property
    def count(self) -> int:
        """Number of samples since start."""
        return self.cumulative[-1]


@dataclass(frozen=True, slots=True)
class LagStats:
    """Loop lag percentiles in milliseconds."""

    p50: float
    p99: float
    max: float
    samples: int


class LoopLagMonitor:
    """Measures the loop's wake-up delay continuously."""

    def __init__(self, interval_s: float = LAG_INTERVAL_S, samples: int = LAG_SAMPLES) -> None:
        self.interval_s = interval_s
        self._samples: deque[float] = deque(maxlen=samples)
        self.max_ever_s = 0.0
        # Per-bucket (not cumulative) counts since start; the window above is for percentiles,
        # this is for Prometheus, where a count that goes down reads as a restart.
        self._bucket_counts = [0] * (len(LAG_BUCKETS_S) + 1)
        self._sum_s = 0.0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample forever (until cancelled)."""
        task_status.started()
        while True:
            start = time.perf_counter()
            await anyio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - start - self.interval_s)
            self.observe(lag)

    def observe(self, lag_s: float) -> None:
        """Record one wake-up delay (seconds)."""
        self._samples.append(lag_s)
        self.max_ever_s = max(self.max_ever_s, lag_s)
        self._bucket_counts[bisect.bisect_left(LAG_BUCKETS_S, lag_s)] += 1
        self._sum_s += lag_s

    def histogram(self) -> LagHistogram:
        """All samples since start as a cumulative histogram."""
        acc, cumulative = 0, []
        for n in self._bucket_counts:
            acc += n
            cumulative.append(acc)
        return LagHistogram(LAG_BUCKETS_S, tuple(cumulative), self._sum_s)

    def recent_max_s(self, n: int = 10) -> float:
        """Largest lag among the last ``n`` samples (for the watchdog)."""
        if not self._samples:
            return 0.0
        return max(list(self._samples)[-n:])

    def samples_ms(self) -> list[float]:
        """The kept samples in milliseconds (a copy)."""
        return [v * 1000 for v in self._samples]

    def stats(self) -> LagStats:
        """Percentiles over the kept window."""
        if not self._samples:
            return LagStats(0.0, 0.0, 0.0, 0)
        arr = np.fromiter(self._samples, dtype=np.float64) * 1000
        p50, p99 = np.percentile(arr, [50, 99])
        return LagStats(
            round(float(p50), 3), round(float(p99), 3), round(float(arr.max()), 3), len(arr)
        )
