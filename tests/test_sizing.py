"""Tests of position sizing: fixed-fractional, ATR stops and fractional Kelly."""

# STYLE.md asks for asserts that read `expected == actual`; SIM300 calls that a Yoda condition.

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from forexd.domain import INSTRUMENTS, Instrument, get_instrument
from forexd.risk import (
    SizingConfig,
    atr_stop_distance,
    kelly_fraction,
    kelly_units,
    units_for_risk,
)

EURUSD = get_instrument("EURUSD")
USDJPY = get_instrument("USDJPY")
BIG_CAP = 100_000_000


def test_fixed_fractional_risks_the_fraction_of_equity_at_the_stop() -> None:
    """1 % of 100,000 USD over a 20-pip EURUSD stop is 500,000 units."""
    units = units_for_risk(
        EURUSD,
        equity=100_000.0,
        risk_fraction=0.01,
        stop_distance=0.0020,
        price=1.10,
        max_units=BIG_CAP,
    )
    assert 500_000 == units


def test_fixed_fractional_converts_a_jpy_stop_to_usd() -> None:
    """A 0.50 JPY stop at 150 costs 1/300 USD per unit, so 1,000 USD buys 300,000 units."""
    units = units_for_risk(
        USDJPY,
        equity=100_000.0,
        risk_fraction=0.01,
        stop_distance=0.50,
        price=150.0,
        max_units=BIG_CAP,
    )
    assert 300_000 == units


def test_units_are_rounded_down() -> None:
    """3,333,333.33 units of risk become 3,333,333 whole units."""
    units = units_for_risk(
        EURUSD,
        equity=100_000.0,
        risk_fraction=0.01,
        stop_distance=0.0003,
        price=1.10,
        max_units=BIG_CAP,
    )
    assert 3_333_333 == units


def test_units_never_exceed_the_cap() -> None:
    """A tiny stop that would size to infinity returns the cap."""
    units = units_for_risk(
        EURUSD,
        equity=100_000.0,
        risk_fraction=0.01,
        stop_distance=1e-300,
        price=1.10,
        max_units=250_000,
    )
    assert 250_000 == units


@pytest.mark.parametrize(
    ("equity", "risk_fraction", "stop", "price", "cap"),
    [
        (0.0, 0.01, 0.002, 1.1, BIG_CAP),  # no equity
        (-5.0, 0.01, 0.002, 1.1, BIG_CAP),
        (math.nan, 0.01, 0.002, 1.1, BIG_CAP),
        (1e5, 0.0, 0.002, 1.1, BIG_CAP),  # no risk
        (1e5, 2.0, 0.002, 1.1, BIG_CAP),  # "2 %" typed as a fraction
        (1e5, math.nan, 0.002, 1.1, BIG_CAP),
        (1e5, 0.01, 0.0, 1.1, BIG_CAP),  # no stop
        (1e5, 0.01, math.nan, 1.1, BIG_CAP),  # ATR still warming up
        (1e5, 0.01, math.inf, 1.1, BIG_CAP),
        (1e5, 0.01, 0.002, 0.0, BIG_CAP),  # no price
        (1e5, 0.01, 0.002, math.inf, BIG_CAP),
        (1e5, 0.01, 0.002, 1.1, 0),  # zero cap
        (1e5, 0.01, 0.002, 1.1, -10),
    ],
)
def test_degenerate_inputs_size_to_zero(
    equity: float, risk_fraction: float, stop: float, price: float, cap: int
) -> None:
    """Any degenerate input means no trade."""
    units = units_for_risk(
        EURUSD,
        equity=equity,
        risk_fraction=risk_fraction,
        stop_distance=stop,
        price=price,
        max_units=cap,
    )
    assert 0 == units


def test_atr_stop_distance_is_the_multiple_of_atr() -> None:
    """A 2 × ATR stop with ATR 0.0015 is 0.0030 in price."""
    assert 0.0030 == pytest.approx(atr_stop_distance(0.0015, 2.0))


@pytest.mark.parametrize(("atr", "k"), [(math.nan, 2.0), (0.0, 2.0), (0.001, -1.0), (-0.1, 1.0)])
def test_atr_stop_distance_is_zero_for_degenerate_inputs(atr: float, k: float) -> None:
    """A missing or negative ATR or multiple gives no stop (and so no size)."""
    assert 0.0 == atr_stop_distance(atr, k)


@pytest.mark.parametrize(
    ("p", "b", "fraction", "cap", "expected"),
    [
        (0.6, 1.0, 0.25, 1.0, 0.05),  # full Kelly 0.2, quarter of it
        (0.6, 1.0, 0.25, 0.02, 0.02),  # capped
        (0.5, 2.0, 0.5, 1.0, 0.125),  # full 0.25, half of it
        (0.5, 1.0, 0.25, 1.0, 0.0),  # no edge
        (0.3, 1.0, 0.25, 1.0, 0.0),  # negative edge
        (1.2, 1.0, 0.25, 1.0, 0.0),  # not a probability
        (0.6, 0.0, 0.25, 1.0, 0.0),  # no payoff
        (0.6, 1.0, 0.0, 1.0, 0.0),  # no share of Kelly
    ],
)
def test_kelly_fraction(p: float, b: float, fraction: float, cap: float, expected: float) -> None:
    """Fractional Kelly is ``fraction × (p − (1 − p) / b)``, capped, and 0 without an edge."""
    assert expected == pytest.approx(kelly_fraction(p, b, fraction=fraction, cap=cap))


def test_kelly_units_size_with_the_kelly_risk_fraction() -> None:
    """A 0.02 Kelly risk over a 20-pip stop on 100,000 USD is 1,000,000 units."""
    units = kelly_units(
        EURUSD,
        equity=100_000.0,
        win_prob=0.6,
        payoff_ratio=1.0,
        stop_distance=0.0020,
        price=1.1,
        max_units=BIG_CAP,
    )
    assert 1_000_000 == units


def test_sizing_config_uses_the_configured_method() -> None:
    """Fixed-fractional ignores edge estimates; Kelly without them sizes to zero."""
    fixed = SizingConfig(risk_fraction=0.01, atr_multiple=2.0, max_units=BIG_CAP)
    assert 500_000 == fixed.units(EURUSD, equity=100_000.0, price=1.1, atr=0.0010)
    kelly = SizingConfig(method="kelly", kelly_cap=0.02, max_units=BIG_CAP)
    assert 0 == kelly.units(EURUSD, equity=100_000.0, price=1.1, atr=0.0010)
    sized = kelly.units(
        EURUSD, equity=100_000.0, price=1.1, atr=0.0010, win_prob=0.6, payoff_ratio=1.0
    )
    assert 1_000_000 == sized


def test_sizing_config_rejects_a_percent_typed_as_a_fraction() -> None:
    """``risk_fraction = 2`` fails validation instead of risking twice the account."""
    with pytest.raises(ValidationError, match="risk_fraction"):
        SizingConfig(risk_fraction=2)


@dataclass(frozen=True)
class SizingInputs:
    """Everything but the risk fraction."""

    instrument: Instrument
    equity: float
    stop_distance: float
    price: float
    max_units: int

    def size(self, risk_fraction: float) -> int:
        """Fixed-fractional units for ``risk_fraction``."""
        return units_for_risk(
            self.instrument,
            equity=self.equity,
            risk_fraction=risk_fraction,
            stop_distance=self.stop_distance,
            price=self.price,
            max_units=self.max_units,
        )


sizing_inputs = st.builds(
    SizingInputs,
    instrument=st.sampled_from(sorted(INSTRUMENTS.values(), key=lambda i: i.symbol)),
    equity=st.floats(min_value=-1e3, max_value=1e9, allow_nan=False),
    stop_distance=st.floats(min_value=0.0, max_value=10.0),
    price=st.floats(min_value=0.01, max_value=500.0),
    max_units=st.integers(min_value=-5, max_value=10_000_000),
)
fractions = st.floats(min_value=0.0, max_value=1.0)


@given(sizing_inputs, fractions)
def test_units_are_whole_non_negative_and_within_the_cap(
    inputs: SizingInputs, risk_fraction: float
) -> None:
    """Any input gives an int between 0 and the cap."""
    units = inputs.size(risk_fraction)
    assert isinstance(units, int)
    assert 0 <= units <= max(0, inputs.max_units)


@given(sizing_inputs, fractions, fractions)
def test_units_are_monotone_in_the_risk_fraction(
    inputs: SizingInputs, first: float, second: float
) -> None:
    """Risking a larger fraction never gives fewer units."""
    low, high = sorted((first, second))
    assert inputs.size(low) <= inputs.size(high)
