"""Simple moving-average crossover: long while the fast SMA is above the slow one.

The comparison is done on integer price points with cross-multiplied sums
(``sum_fast * slow > sum_slow * fast``) instead of floating means. That is exact, so the
live path (running sums) and the vectorised path (a cumulative sum) can never disagree on
a crossing that is equal to the last bit.

The live path is O(1) a bar: the two window sums are updated with the point that enters
and the points that leave, kept in a ring of the last ``slow`` points. Integer sums have
no drift, so the running sums are always the window sums exactly. Whenever the strategy
may have missed a bar (a new history, a paused actor, warm-up bars appended without a
decision) it re-sums the window from the history instead (``BarHistory.total`` tells).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from forexd.domain import Protection
from forexd.domain.bars import BarArrays, BarHistory, IntArray
from forexd.strategies.base import NO_CHANGE, ProtectionParams, StrategyParams


class SmaCrossParams(StrategyParams, ProtectionParams):
    """Parameters of :class:`SmaCross` (protection off unless ``stop_atr`` is set)."""

    fast: int = Field(10, ge=1, le=10_000, description="bars in the fast average")
    slow: int = Field(20, ge=2, le=100_000, description="bars in the slow average")
    units: int = Field(10_000, ge=1, le=100_000_000, description="position size in base units")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class SmaCross:
    """Always in the market: +units when SMA(fast) > SMA(slow), -units when below."""

    name: ClassVar[str] = "sma_cross"
    Params: ClassVar[type[SmaCrossParams]] = SmaCrossParams

    def __init__(self, params: SmaCrossParams) -> None:
        self.params = params
        self._source: BarHistory | None = None  # the history the running sums follow
        self._seen = -1  # its ``total`` at the last decision
        self._ring: list[int] = []  # the last ``slow`` points; ``_ring[_head]`` is oldest
        self._head = 0
        self._sum_fast = 0
        self._sum_slow = 0
        self._scale = 1

    @property
    def warmup_bars(self) -> int:
        """Bars needed before the slow average exists."""
        return self.params.slow

    def protection(self, history: BarHistory) -> Protection | None:
        """Stop/target from the ATR when ``stop_atr`` is set (see :class:`ProtectionParams`)."""
        return self.params.protection_for(history)

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Target from the last ``slow`` closes; ``None`` while warming up or on a tie."""
        fast, slow = self.params.fast, self.params.slow
        if len(history) < slow:
            return None
        last = history.last
        if history is self._source and history.total == self._seen + 1 and last is not None:
            point = round(last.close * self._scale)  # what BarHistory.points holds
            ring, head = self._ring, self._head
            self._sum_slow += point - ring[head]
            self._sum_fast += point - ring[head - fast]  # index mod slow: oldest of the fast
            ring[head] = point
            self._head = head + 1 if head + 1 < slow else 0
        else:
            self._resync(history)
        self._seen = history.total
        lhs, rhs = self._sum_fast * slow, self._sum_slow * fast
        if lhs > rhs:
            return self.params.units
        if lhs < rhs:
            return -self.params.units
        return None

    def _resync(self, history: BarHistory) -> None:
        """Re-sum both windows from the history (first decision, or bars were missed)."""
        fast, slow = self.params.fast, self.params.slow
        self._ring = history.points(slow).tolist()
        self._head = 0
        self._sum_slow = sum(self._ring)
        self._sum_fast = sum(self._ring[slow - fast :])
        self._scale = history.instrument.price_scale
        self._source = history

    def targets(self, bars: BarArrays) -> IntArray:
        """Vectorised :meth:`decide` over a whole series (same integer arithmetic)."""
        fast, slow, units = self.params.fast, self.params.slow, self.params.units
        n = len(bars)
        out = np.full(n, NO_CHANGE, dtype=np.int64)
        if n < slow:
            return out
        csum = np.empty(n + 1, dtype=np.int64)
        csum[0] = 0
        np.cumsum(bars.points, dtype=np.int64, out=csum[1:])
        # Slices, not fancy indexing (a gather costs ~4x a strided subtract).
        sum_slow = csum[slow:] - csum[: n + 1 - slow]
        sum_fast = csum[slow:] - csum[slow - fast : n + 1 - fast]
        side = np.sign(sum_fast * slow - sum_slow * fast)  # exact: int64, no rounding
        tgt = np.where(side == 0, NO_CHANGE, side * units)
        out[slow - 1 :] = tgt
        return out
