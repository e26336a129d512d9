"""Position sizing: how many units to trade for a given risk.

Two rules, both returning a non-negative whole number of base-currency units (the caller
applies the direction) that never exceeds ``max_units``:

- **fixed-fractional**: lose at most ``risk_fraction`` of equity if the stop is hit. The
  stop distance is usually ``k × ATR`` (:func:`atr_stop_distance`).
- **fractional Kelly**: the Kelly fraction ``p − (1 − p) / b`` for win probability ``p``
  and payoff ratio ``b`` (average win / average loss), scaled down (full Kelly is far too
  aggressive when ``p`` is only an estimate) and capped, then used as the risk fraction.

A loss at the stop is a price move in the quote currency; it is converted to USD with the
instrument's own price (:meth:`forexd.domain.Instrument.to_account`), so 100 pips on
USDJPY risk fewer dollars per unit than 100 pips on EURUSD.

Degenerate inputs size to **zero** — no trade — instead of raising: a NaN ATR while an
indicator warms up, zero equity or a win probability of 0.4 with payoff 1 all mean "do not
trade", and the hot path should not need a try block to learn that. Degenerate means any
input that is not finite, a non-positive equity, price, stop distance or payoff ratio, a
risk fraction outside (0, 1] (a value like 2 is much more likely "2 %" typed as a fraction
than a wish to risk twice the account), a win probability outside [0, 1], a negative cap.
Units are rounded down, so the risk taken never exceeds the risk asked for.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forexd.domain import Instrument


def atr_stop_distance(atr: float, multiple: float) -> float:
    """Stop distance in price units: ``multiple × atr``; 0.0 if either is not finite and > 0."""
    if not (0.0 < atr < math.inf and 0.0 < multiple < math.inf):
        return 0.0
    return multiple * atr


def units_for_risk(
    instrument: Instrument,
    *,
    equity: float,
    risk_fraction: float,
    stop_distance: float,
    price: float,
    max_units: int,
) -> int:
    """Fixed-fractional size: units whose loss at the stop is ``risk_fraction × equity``.

    Args:
        instrument: the traded pair (for the quote→USD conversion).
        equity: account equity in USD.
        risk_fraction: fraction of equity to lose if the stop is hit, in (0, 1].
        stop_distance: distance from entry to stop in price units (> 0).
        price: current price of the pair (quote per base).
        max_units: the result never exceeds this.

    Returns:
        Whole units ≥ 0, rounded down; 0 for degenerate inputs (see the module docs).
    """
    if max_units <= 0 or not (0.0 < risk_fraction <= 1.0):
        return 0
    if not (0.0 < equity < math.inf and 0.0 < price < math.inf):
        return 0
    if not (0.0 < stop_distance < math.inf):
        return 0
    loss_per_unit_usd = instrument.to_account(stop_distance, price)
    if not (0.0 < loss_per_unit_usd < math.inf):
        return 0
    raw = equity * risk_fraction / loss_per_unit_usd
    # Compare before floor(): a tiny stop can make ``raw`` overflow to inf.
    if raw >= max_units:
        return max_units
    return math.floor(raw)


def kelly_fraction(
    win_prob: float, payoff_ratio: float, *, fraction: float = 0.25, cap: float = 0.02
) -> float:
    """Fraction of equity to risk per trade by fractional Kelly, capped.

    Args:
        win_prob: probability that a trade reaches its target, in [0, 1].
        payoff_ratio: average win divided by average loss (> 0).
        fraction: share of full Kelly to use, in (0, 1] (0.25 = "quarter Kelly").
        cap: the result never exceeds this.

    Returns:
        A risk fraction in [0, cap]; 0 when there is no edge or an input is degenerate.
    """
    if not (0.0 <= win_prob <= 1.0 and 0.0 < payoff_ratio < math.inf):
        return 0.0
    if not (0.0 < fraction <= 1.0 and 0.0 < cap < math.inf):
        return 0.0
    full = win_prob - (1.0 - win_prob) / payoff_ratio
    if full <= 0.0:
        return 0.0
    return min(cap, fraction * full)


def kelly_units(
    instrument: Instrument,
    *,
    equity: float,
    win_prob: float,
    payoff_ratio: float,
    stop_distance: float,
    price: float,
    max_units: int,
    fraction: float = 0.25,
    cap: float = 0.02,
) -> int:
    """Units for a fractional-Kelly risk fraction (see :func:`kelly_fraction`).

    Returns:
        Whole units ≥ 0, never above ``max_units``; 0 without an edge or for degenerate
        inputs.
    """
    risk = kelly_fraction(win_prob, payoff_ratio, fraction=fraction, cap=cap)
    return units_for_risk(
        instrument,
        equity=equity,
        risk_fraction=risk,
        stop_distance=stop_distance,
        price=price,
        max_units=max_units,
    )


class SizingConfig(BaseModel):
    """How strategies size positions (to embed in the daemon configuration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["fixed_fractional", "kelly"] = "fixed_fractional"
    risk_fraction: float = Field(
        0.01, gt=0, le=0.1, description="equity fraction lost at the stop (fixed-fractional)"
    )
    atr_multiple: float = Field(2.0, gt=0, le=100, description="stop distance = k × ATR")
    kelly_fraction: float = Field(0.25, gt=0, le=1, description="share of full Kelly used")
    kelly_cap: float = Field(0.02, gt=0, le=0.1, description="largest Kelly risk fraction")
    max_units: int = Field(1_000_000, ge=0, description="no sizing result exceeds this")

    def units(
        self,
        instrument: Instrument,
        *,
        equity: float,
        price: float,
        atr: float,
        win_prob: float | None = None,
        payoff_ratio: float | None = None,
        stop_distance: float | None = None,
    ) -> int:
        """Size a trade with the configured method and an ATR-based stop.

        ``kelly`` needs ``win_prob`` and ``payoff_ratio``; without them it sizes to zero
        (no estimate of the edge, no trade). ``stop_distance``, when the order carries a
        real stop (:class:`~forexd.domain.Protection`), replaces ``atr_multiple × ATR``: the
        risk sized is then the loss at the stop the broker actually holds.
        """
        stop = atr_stop_distance(atr, self.atr_multiple) if stop_distance is None else stop_distance
        if self.method == "fixed_fractional":
            return units_for_risk(
                instrument,
                equity=equity,
                risk_fraction=self.risk_fraction,
                stop_distance=stop,
                price=price,
                max_units=self.max_units,
            )
        if win_prob is None or payoff_ratio is None:
            return 0
        return kelly_units(
            instrument,
            equity=equity,
            win_prob=win_prob,
            payoff_ratio=payoff_ratio,
            stop_distance=stop,
            price=price,
            max_units=self.max_units,
            fraction=self.kelly_fraction,
            cap=self.kelly_cap,
        )
