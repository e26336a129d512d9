"""Event-loop lag: how late a periodic timer wakes up.

A task sleeps ``interval`` and measures how much later than asked it ran. Anything that
blocks the loop (a heavy computation, a sync file write) shows up here at once. Samples
are kept in a bounded ring so percentiles describe the last minute or so.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import anyio
import numpy as np
from anyio.abc import TaskStatus

LAG_INTERVAL_S = 0.01
LAG_SAMPLES = 6000  # ~1 minute at the default interval


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

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample forever (until cancelled)."""
        task_status.started()
        while True:
            start = time.perf_counter()
            await anyio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - start - self.interval_s)
            self._samples.append(lag)
            self.max_ever_s = max(self.max_ever_s, lag)

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
