"""Simple moving-average crossover: long while the fast SMA is above the slow one.

The comparison is done on integer price points with cross-multiplied sums
(``sum_fast * slow > sum_slow * fast``) instead of floating means. That is exact, so the
live path (a sum over the window each bar) and the vectorised path (a cumulative sum) can
never disagree on a crossing that is equal to the last bit.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from forexd.domain.bars import BarArrays, BarHistory, IntArray
from forexd.strategies.base import NO_CHANGE, StrategyParams


class SmaCrossParams(StrategyParams):
    """Parameters of :class:`SmaCross`."""

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

    @property
    def warmup_bars(self) -> int:
        """Bars needed before the slow average exists."""
        return self.params.slow

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Target from the last ``slow`` closes; ``None`` while warming up or on a tie."""
        fast, slow = self.params.fast, self.params.slow
        if len(history) < slow:
            return None
        # Python ints from a list: for the short windows SMAs use, this is ~3x faster than
        # two numpy reductions per bar, and the sums are exact either way.
        pts = history.points(slow).tolist()
        sum_slow = sum(pts)
        sum_fast = sum(pts[slow - fast :])
        lhs, rhs = sum_fast * slow, sum_slow * fast
        if lhs > rhs:
            return self.params.units
        if lhs < rhs:
            return -self.params.units
        return None

    def targets(self, bars: BarArrays) -> IntArray:
        """Vectorised :meth:`decide` over a whole series (same integer arithmetic)."""
        fast, slow, units = self.params.fast, self.params.slow, self.params.units
        n = len(bars)
        out = np.full(n, NO_CHANGE, dtype=np.int64)
        if n < slow:
            return out
        csum = np.concatenate(([0], np.cumsum(bars.points, dtype=np.int64)))
        end = np.arange(slow, n + 1)
        sum_slow = csum[end] - csum[end - slow]
        sum_fast = csum[end] - csum[end - fast]
        lhs, rhs = sum_fast * slow, sum_slow * fast
        tgt = np.where(lhs > rhs, units, np.where(lhs < rhs, -units, NO_CHANGE))
        out[slow - 1 :] = tgt
        return out
