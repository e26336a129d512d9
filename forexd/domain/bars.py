"""The bar window strategies read, and a whole bar series as arrays.

Both hold one symbol's OHLC columns as contiguous numpy arrays: :class:`BarHistory` the
most recent bars (live and event-driven backtest), :class:`BarArrays` a whole series
(vectorised backtest, training). They are value types of the domain layer so that
features, models and strategies can share them without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from forexd.domain import Bar, Instrument

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class BarHistory:
    """The most recent ``capacity`` bars of one symbol as contiguous numpy arrays.

    The arrays are twice the capacity long and filled left to right; when the end is
    reached the last ``capacity - 1`` values are moved to the front (amortised O(1)). So
    the last ``n`` values are always one contiguous slice — reading never copies — and an
    append is one scalar write per column (a ring written twice would be two).
    ``points`` holds closes as integers (``round(close * 10**precision)``) so that sums and
    comparisons are exact and identical in the live and vectorised paths.
    """

    __slots__ = (
        "_cap",
        "_close",
        "_cols",
        "_end",
        "_high",
        "_low",
        "_n",
        "_open",
        "_points",
        "_scale",
        "_ts",
        "instrument",
        "last",
    )

    def __init__(self, instrument: Instrument, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.instrument = instrument
        self._cap = capacity
        self._scale = instrument.price_scale
        self._open = np.zeros(2 * capacity)
        self._high = np.zeros(2 * capacity)
        self._low = np.zeros(2 * capacity)
        self._close = np.zeros(2 * capacity)
        self._points = np.zeros(2 * capacity, dtype=np.int64)
        self._ts = np.zeros(2 * capacity, dtype=np.int64)
        self._cols = (self._open, self._high, self._low, self._close, self._points, self._ts)
        self._end = 0
        self._n = 0
        self.last: Bar | None = None

    def append(self, bar: Bar) -> None:
        """Add the newest bar (bars must arrive in time order)."""
        end = self._end
        if end == 2 * self._cap:
            keep = self._cap - 1
            for col in self._cols:
                col[:keep] = col[end - keep : end]
            end = keep
        self._open[end] = bar.open
        self._high[end] = bar.high
        self._low[end] = bar.low
        self._close[end] = bar.close
        self._points[end] = round(bar.close * self._scale)
        self._ts[end] = bar.ts
        self._end = end + 1
        if self._n < self._cap:
            self._n += 1
        self.last = bar

    def __len__(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        """Most bars kept."""
        return self._cap

    def _window(self, arr: npt.NDArray[Any], n: int | None) -> npt.NDArray[Any]:
        n = self._n if n is None else min(n, self._n)
        return arr[self._end - n : self._end]

    def closes(self, n: int | None = None) -> FloatArray:
        """Last ``n`` closes (all kept if ``None``), oldest first."""
        return self._window(self._close, n)

    def opens(self, n: int | None = None) -> FloatArray:
        """Last ``n`` opens, oldest first."""
        return self._window(self._open, n)

    def highs(self, n: int | None = None) -> FloatArray:
        """Last ``n`` highs, oldest first."""
        return self._window(self._high, n)

    def lows(self, n: int | None = None) -> FloatArray:
        """Last ``n`` lows, oldest first."""
        return self._window(self._low, n)

    def points(self, n: int | None = None) -> IntArray:
        """Last ``n`` closes in integer points, oldest first."""
        return self._window(self._points, n)

    def times(self, n: int | None = None) -> IntArray:
        """Last ``n`` bar open times (epoch ns), oldest first."""
        return self._window(self._ts, n)


@dataclass(frozen=True, slots=True)
class BarArrays:
    """A whole series of one symbol's bars as arrays, for vectorised evaluation."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    points: IntArray

    @classmethod
    def from_ohlc(
        cls,
        instrument: Instrument,
        ts: IntArray,
        open_: FloatArray,
        high: FloatArray,
        low: FloatArray,
        close: FloatArray,
    ) -> BarArrays:
        """Build from OHLC columns, deriving integer close points."""
        points = np.rint(close * instrument.price_scale).astype(np.int64)
        return cls(ts, open_, high, low, close, points)

    def __len__(self) -> int:
        return len(self.ts)
