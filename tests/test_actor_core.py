"""SymbolCore: targets, in-flight units, the risk gate and risk-based sizing."""

from __future__ import annotations

import pytest

from forexd.actors.core import GateDecision, SymbolCore, average_true_range
from forexd.domain import Bar, Fill, get_instrument
from forexd.domain.bars import BarHistory
from forexd.risk import SizingConfig
from forexd.strategies.sma_cross import SmaCross, SmaCrossParams

EURUSD = get_instrument("EURUSD")


def _bars(closes: list[float]) -> list[Bar]:
    return [Bar("EURUSD", i, c, c + 0.001, c - 0.001, c) for i, c in enumerate(closes)]


def _core() -> SymbolCore:
    return SymbolCore(EURUSD, SmaCross(SmaCrossParams(fast=2, slow=3, units=1000)))


def test_an_order_is_the_difference_between_target_and_held_plus_in_flight() -> None:
    """A pending order counts as held: no second order for the same target."""
    core = _core()
    orders = [core.on_bar(b) for b in _bars([1.0, 1.1, 1.2, 1.3])]
    sent = [o for o in orders if o is not None]
    assert [1000] == [o.units for o in sent]
    assert "EURUSD-2-0" == sent[0].client_id
    core.on_fill(Fill("f", sent[0].client_id, "EURUSD", 1000, 1.2, 0.0, 3))
    assert (1000, 0) == (core.position_units, core.pending_units)
    flip = [core.on_bar(b) for b in _bars([1.3, 1.0, 0.9])[1:]]
    assert [-2000] == [o.units for o in flip if o is not None]


def test_a_denial_is_counted_and_nothing_is_sent() -> None:
    """The gate's refusal reason is kept; the core sends nothing."""

    class Deny:
        def check(
            self,
            symbol: str,
            units: int,
            position_units: int,
            price: float,
            ts: int,
            stop_distance: float | None = None,
        ) -> GateDecision:
            return GateDecision(0, "max_units")

    core = SymbolCore(EURUSD, SmaCross(SmaCrossParams(fast=2, slow=3)), Deny())
    assert [None] * 4 == [core.on_bar(b) for b in _bars([1.0, 1.1, 1.2, 1.3])]
    assert (2, "max_units") == (core.denials, core.last_denial)


def test_sizing_by_risk_keeps_the_strategys_direction() -> None:
    """With a sizer, the size comes from equity, ATR and risk fraction, the sign from the
    strategy: 1 % of 100k at a 2×ATR stop of 0.004 is 250,000 units."""
    sizing = SizingConfig(
        method="fixed_fractional", risk_fraction=0.01, atr_multiple=2.0, max_units=1_000_000
    )
    core = _core()

    def sizer(history: BarHistory, target: int) -> int:
        units = sizing.units(
            EURUSD, equity=100_000.0, price=history.closes(1)[0], atr=average_true_range(history)
        )
        return units if target > 0 else -units

    core.sizer = sizer
    orders = [core.on_bar(b) for b in _bars([1.0, 1.0, 1.0, 1.0, 1.001])]
    sent = [o for o in orders if o is not None]
    assert 1 == len(sent)
    atr = average_true_range(core.history)
    assert 0.002 == pytest.approx(atr, abs=1e-3)
    expected = int(100_000 * 0.01 / (2 * atr))
    assert expected == pytest.approx(sent[0].units, abs=1)
