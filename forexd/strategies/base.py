"""The strategy contract.

A strategy is pure: it sees a :class:`BarHistory` and the current position and returns the
position it wants (a *target* in signed units) or ``None`` for "no change". The engine, not
the strategy, knows whether it runs live or in a backtest. Strategies that can also compute
their targets over a whole array at once implement :class:`VectorisedStrategy`; the backtest
uses that for sweeps and must get the same trades as the event-driven path.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from forexd.domain.bars import BarArrays, BarHistory, IntArray


class StrategyParams(BaseModel):
    """Base for a strategy's parameters: validated, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Strategy(Protocol):
    """Decides a target position from recent bars."""

    name: ClassVar[str]

    @property
    def warmup_bars(self) -> int:
        """Bars of history needed before the first decision (and kept in the window)."""
        ...

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Return the wanted position in signed units, or ``None`` to keep the current one."""
        ...


@runtime_checkable
class VectorisedStrategy(Strategy, Protocol):
    """A strategy whose targets over a whole series can be computed at once."""

    def targets(self, bars: BarArrays) -> IntArray:
        """Target after each bar's close; ``np.iinfo(np.int64).min`` means "no change"."""
        ...


NO_CHANGE = int(np.iinfo(np.int64).min)
