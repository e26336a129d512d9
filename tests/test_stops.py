"""Protective stops: the ledger's intrabar rule, the core's re-entry rule, require_stop."""

from __future__ import annotations

import pydantic
import pytest

from forexd.actors.core import SymbolCore
from forexd.brokers.ledger import CostModel, Ledger
from forexd.domain import Bar, Order, Protection, get_instrument
from forexd.domain.bars import BarHistory, average_true_range
from forexd.risk import Holding, RiskGate, RiskLimits
from forexd.risk.limits import DenialReason
from forexd.risk.state import RiskState
from forexd.strategies.sma_cross import SmaCross, SmaCrossParams

EURUSD = get_instrument("EURUSD")
COSTS = CostModel(spread_pips=1.0, slippage_pips=0.0)  # 0.5 pip against each fill


def bar(ts: int, o: float, h: float, lo: float, c: float, symbol: str = "EURUSD") -> Bar:
    return Bar(symbol, ts, o, h, lo, c)


def opened(units: int, protection: Protection | None, costs: CostModel = COSTS) -> Ledger:
    """A ledger holding ``units`` EURUSD bought/sold at 1.10000 (bar 1's open)."""
    ledger = Ledger(100_000.0, costs)
    ledger.submit(Order("E-0-0", "EURUSD", units, 0, 0, "", protection))
    (fill,) = ledger.on_bar(bar(1, 1.1000, 1.1002, 1.0998, 1.1000))
    assert fill.reason == ""
    return ledger


def test_a_long_stop_touched_inside_a_bar_fills_at_the_stop_with_reason_and_time() -> None:
    """Entry 1.10005 (ask), stop 20 pips below: the bar's low reaches it; sold at stop - 0.5 pip."""
    ledger = opened(10_000, Protection(0.0020), CostModel())
    assert 1.0980 == ledger.protective["EURUSD"].stop
    assert [] == ledger.on_bar(bar(2, 1.0990, 1.0995, 1.0985, 1.0990))
    (stop,) = ledger.on_bar(bar(3, 1.0990, 1.0992, 1.0970, 1.0975))
    assert (stop.units, stop.price, stop.ts, stop.reason) == (-10_000, 1.098, 3, "stop_loss")
    assert stop.client_id == "E-0-0:stop_loss"
    assert 0 == ledger.units("EURUSD") and "EURUSD" not in ledger.protective
    assert pytest.approx(-20.0) == ledger.realized


def test_a_bar_touching_both_stop_and_target_exits_at_the_stop() -> None:
    """Bars do not say which came first: the stop wins (stop 1.09805 from the 1.10005 fill)."""
    ledger = opened(10_000, Protection(0.0020, take_profit_distance=0.0030))
    assert (1.09805, 1.10305) == (
        ledger.protective["EURUSD"].stop,
        ledger.protective["EURUSD"].take_profit,
    )
    (fill,) = ledger.on_bar(bar(2, 1.1000, 1.1040, 1.0970, 1.1000))
    assert ("stop_loss", 1.0980) == (fill.reason, pytest.approx(fill.price))
    assert "EURUSD" not in ledger.protective


def test_a_gap_through_the_stop_fills_at_the_open_not_the_stop() -> None:
    """A short's stop at 1.10205 is jumped over by an open at 1.1050: bought at the open + costs."""
    ledger = opened(-10_000, Protection(0.0020))
    stop_level = ledger.protective["EURUSD"].stop
    assert stop_level == round(1.09995 + 0.0020, 5)
    (fill,) = ledger.on_bar(bar(2, 1.1050, 1.1060, 1.1045, 1.1055))
    assert (fill.units, fill.reason) == (10_000, "stop_loss")
    assert pytest.approx(1.1050 + 0.00005) == fill.price


def test_a_take_profit_fills_at_the_target_and_a_favourable_gap_at_the_open() -> None:
    """Long target 30 pips up: touched inside a bar fills at it; a gap above fills at the open."""
    ledger = opened(10_000, Protection(0.0020, take_profit_distance=0.0030), CostModel())
    (tp,) = ledger.on_bar(bar(2, 1.1010, 1.1035, 1.1005, 1.1020))
    assert (tp.price, tp.reason) == (1.103, "take_profit")
    ledger = opened(10_000, Protection(0.0020, take_profit_distance=0.0030), CostModel())
    (gap,) = ledger.on_bar(bar(2, 1.1100, 1.1110, 1.1090, 1.1100))
    assert (gap.price, gap.reason) == (1.11, "take_profit")


def test_a_trailing_stop_follows_the_high_from_the_next_bar_and_never_loosens() -> None:
    """Trail 20 pips: after a high of 1.1050 the stop is 1.1030; a lower high leaves it there."""
    ledger = opened(10_000, Protection(0.0020, trailing=True), CostModel())
    # The fill bar's own high (1.1002) already tightened it from 1.0980 to 1.0982.
    assert 1.0982 == ledger.protective["EURUSD"].stop
    assert [] == ledger.on_bar(bar(2, 1.1000, 1.1050, 1.1031, 1.1040))
    assert 1.1030 == ledger.protective["EURUSD"].stop
    assert [] == ledger.on_bar(bar(3, 1.1040, 1.1045, 1.1035, 1.1040))
    assert 1.1030 == ledger.protective["EURUSD"].stop
    (fill,) = ledger.on_bar(bar(4, 1.1040, 1.1041, 1.1000, 1.1010))
    assert (fill.price, fill.reason) == (1.103, "trailing_stop")
    assert pytest.approx(10_000 * (1.1030 - 1.1000)) == ledger.realized


def test_closing_or_flipping_without_protection_cancels_the_levels() -> None:
    """Like v20 dependent orders: the stop dies with the position it protected."""
    ledger = opened(10_000, Protection(0.0020))
    ledger.submit(Order("C-1-0", "EURUSD", -10_000, 1, 0))
    ledger.on_bar(bar(2, 1.1000, 1.1001, 1.0999, 1.1000))
    assert {} == ledger.protective
    assert [] == ledger.on_bar(bar(3, 1.0900, 1.0900, 1.0800, 1.0850))
    ledger = opened(10_000, Protection(0.0020))
    ledger.submit(Order("F-1-0", "EURUSD", -20_000, 1, 0))
    ledger.on_bar(bar(2, 1.1000, 1.1001, 1.0999, 1.1000))
    assert {} == ledger.protective and -10_000 == ledger.units("EURUSD")


def test_a_reduction_keeps_the_stop_and_the_stop_closes_what_is_left() -> None:
    """Half closed by an order: the stop still protects (and closes) the other half."""
    ledger = opened(10_000, Protection(0.0020))
    ledger.submit(Order("R-1-0", "EURUSD", -4_000, 1, 0))
    ledger.on_bar(bar(2, 1.1000, 1.1001, 1.0999, 1.1000))
    (fill,) = ledger.on_bar(bar(3, 1.0990, 1.0990, 1.0900, 1.0950))
    assert (fill.units, fill.reason) == (-6_000, "stop_loss")


def test_fill_balances_follow_each_fill_of_a_bar() -> None:
    """An entry and its stop on the same bar: the balance after each, not after the bar."""
    ledger = Ledger(100_000.0, CostModel(commission_per_million=100.0))
    ledger.submit(Order("E-0-0", "EURUSD", 10_000, 0, 0, "", Protection(0.0010)))
    entry, stop = ledger.on_bar(bar(1, 1.1000, 1.1001, 1.0980, 1.0985))
    assert stop.reason == "stop_loss"
    assert ledger.fill_balances[0] == pytest.approx(100_000.0 - entry.commission)
    assert ledger.fill_balances[1] == pytest.approx(ledger.balance)


def _history(closes: list[float]) -> BarHistory:
    h = BarHistory(EURUSD, 64)
    for i, c in enumerate(closes):
        h.append(Bar("EURUSD", i + 1, c, c + 0.0005, c - 0.0005, c))
    return h


def test_sma_cross_sets_no_stop_unless_stop_atr_is_given() -> None:
    """Off by default (parity); with stop_atr the distances are multiples of the ATR."""
    history = _history([1.1 + 0.0001 * i for i in range(30)])
    assert SmaCross(SmaCrossParams(fast=2, slow=5)).protection(history) is None
    params = SmaCrossParams(fast=2, slow=5, stop_atr=2.0, take_profit_atr=3.0, trailing=True)
    p = SmaCross(params).protection(history)
    atr = average_true_range(history)
    assert p == Protection(2.0 * atr, 3.0 * atr, True)


def test_a_take_profit_or_trailing_without_stop_atr_is_refused_with_what_to_do() -> None:
    """Validation names the fix."""
    with pytest.raises(pydantic.ValidationError, match="set stop_atr too"):
        SmaCrossParams(fast=2, slow=5, take_profit_atr=3.0)


def _bars(closes: list[float]) -> list[Bar]:
    return [Bar("EURUSD", i + 1, c, c + 0.0005, c - 0.0005, c) for i, c in enumerate(closes)]


def test_after_a_stop_the_core_waits_for_the_strategy_to_leave_that_side() -> None:
    """A stopped long is not bought back while the fast SMA stays above the slow one."""
    core = SymbolCore(EURUSD, SmaCross(SmaCrossParams(fast=2, slow=3, stop_atr=1.0)))
    rising = _bars([1.10, 1.11, 1.12, 1.13])
    orders = [core.on_bar(b) for b in rising]
    entry = next(o for o in orders if o is not None)
    assert entry.units > 0 and entry.protection is not None
    ledger = Ledger(100_000.0)
    ledger.submit(entry)
    core.on_fill(ledger.on_bar(Bar("EURUSD", 10, 1.13, 1.13, 1.13, 1.13))[0])
    (stop,) = ledger.on_bar(Bar("EURUSD", 11, 1.13, 1.13, 1.00, 1.14))
    core.on_fill(stop)
    assert (core.position_units, core.pending_units, core.protective_exits) == (0, 0, 1)
    assert core.on_bar(Bar("EURUSD", 12, 1.15, 1.1505, 1.1495, 1.15)) is None  # still long-side
    falling = [core.on_bar(b) for b in _bars([1.05, 1.00, 0.95])]
    short = next(o for o in falling if o is not None)
    assert short.units < 0  # the other side is entered


def test_require_stop_denies_an_opening_order_without_a_stop_and_counts_it() -> None:
    """[risk] require_stop = true: no stop, no new position; closing is still allowed."""
    gate = RiskGate(RiskLimits(require_stop=True), RiskState.fresh("acct-1", 0))
    denied = gate.check(
        "EURUSD", 10_000, price=1.1, positions={}, equity=100_000.0, now_ns=1, stop_distance=None
    )
    assert getattr(denied, "reason", None) is DenialReason.NO_STOP
    ok = gate.check(
        "EURUSD", 10_000, price=1.1, positions={}, equity=100_000.0, now_ns=1, stop_distance=0.002
    )
    assert getattr(ok, "units", None) == 10_000
    assert gate.stats().denials == {DenialReason.NO_STOP: 1}


def test_fixed_fractional_sizing_uses_the_orders_own_stop_distance() -> None:
    """1 % of 100k at a 50-pip stop is 200,000 units, whatever the ATR multiple says."""
    from forexd.risk.sizing import SizingConfig

    cfg = SizingConfig(risk_fraction=0.01, atr_multiple=2.0)
    at_stop = cfg.units(EURUSD, equity=100_000.0, price=1.1, atr=0.001, stop_distance=0.005)
    by_atr = cfg.units(EURUSD, equity=100_000.0, price=1.1, atr=0.001)
    assert (at_stop, by_atr) == (200_000, 500_000)


def test_the_ml_strategy_takes_the_same_protection_parameters() -> None:
    """ml: off by default; stop_atr/take_profit_atr give ATR multiples like sma_cross."""
    from forexd.strategies.ml import MlStrategy
    from forexd.strategies.ml_params import MlParams

    history = _history([1.1 + 0.0001 * i for i in range(30)])
    assert MlStrategy(MlParams()).protection(history) is None
    p = MlStrategy(MlParams(stop_atr=2.0, take_profit_atr=3.0)).protection(history)
    atr = average_true_range(history)
    assert p == Protection(2.0 * atr, 3.0 * atr, False)


def test_max_risk_at_stop_clips_a_new_position_and_refuses_growing_past_it() -> None:
    """100 USD at a 20-pip EURUSD stop is 50,000 units: 100k is clipped, more is refused."""
    gate = RiskGate(RiskLimits(max_risk_at_stop_usd=100.0), RiskState.fresh("acct-1", 0))
    kw: dict[str, object] = {"price": 1.1, "equity": 100_000.0, "now_ns": 1, "stop_distance": 0.002}
    first = gate.check("EURUSD", 100_000, positions={}, **kw)  # type: ignore[arg-type]
    assert (getattr(first, "units", None), getattr(first, "clipped_by", None)) == (
        50_000,
        DenialReason.MAX_RISK_AT_STOP,
    )
    held = {"EURUSD": Holding(50_000, 1.1)}
    more = gate.check("EURUSD", 10_000, positions=held, **kw)  # type: ignore[arg-type]
    assert getattr(more, "reason", None) is DenialReason.MAX_RISK_AT_STOP
    closing = gate.check("EURUSD", -50_000, positions=held, **kw)  # type: ignore[arg-type]
    assert getattr(closing, "units", None) == -50_000
