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
from pydantic import BaseModel, ConfigDict, Field, model_validator

from forexd.domain import Protection
from forexd.domain.bars import BarArrays, BarHistory, IntArray, average_true_range


class StrategyParams(BaseModel):
    """Base for a strategy's parameters: validated, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProtectionParams(BaseModel):
    """Protective exits from the ATR (the 14-bar mean true range the sizing uses).

    Mixed into a strategy's parameters. ``stop_atr`` unset means no protection.
    """

    stop_atr: float | None = Field(
        None, gt=0, le=100, description="stop-loss distance in ATRs (unset: no stop)"
    )
    take_profit_atr: float | None = Field(
        None, gt=0, le=100, description="take-profit distance in ATRs (needs stop_atr)"
    )
    trailing: bool = Field(False, description="the stop trails the best price (needs stop_atr)")

    @model_validator(mode="after")
    def _stop_first(self) -> ProtectionParams:
        if self.stop_atr is None and (self.take_profit_atr is not None or self.trailing):
            raise ValueError("take_profit_atr and trailing need stop_atr; set stop_atr too")
        return self

    def protection_for(self, history: BarHistory) -> Protection | None:
        """The protection for an order decided on ``history``'s last bar, if any.

        ``None`` when ``stop_atr`` is unset or the ATR is not known yet (fewer than 2 bars).
        """
        if self.stop_atr is None:
            return None
        return self.from_atr(average_true_range(history))

    def from_atr(self, atr: float) -> Protection | None:
        """The protection for an ATR of ``atr`` (``None``: no stop, or ATR not positive)."""
        if self.stop_atr is None or not 0.0 < atr < float("inf"):
            return None
        tp = None if self.take_profit_atr is None else self.take_profit_atr * atr
        return Protection(self.stop_atr * atr, tp, self.trailing)


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
class ProtectedStrategy(Strategy, Protocol):
    """A strategy that attaches protective exits to the orders that open a position."""

    def protection(self, history: BarHistory) -> Protection | None:
        """Stop-loss (and optional take-profit/trailing) for an order decided now, or none."""
        ...


@runtime_checkable
class VectorisedStrategy(Strategy, Protocol):
    """A strategy whose targets over a whole series can be computed at once."""

    def targets(self, bars: BarArrays) -> IntArray:
        """Target after each bar's close; ``np.iinfo(np.int64).min`` means "no change"."""
        ...


NO_CHANGE = int(np.iinfo(np.int64).min)
