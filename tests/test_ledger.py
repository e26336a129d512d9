"""The simulated execution core: fills, costs, P&L in USD."""

from __future__ import annotations

import pytest

from forexd.brokers.ledger import CostModel, Ledger
from forexd.domain import Bar, Fill, Order, Position, get_instrument


def _bar(ts: int, o: float, c: float | None = None, symbol: str = "EURUSD") -> Bar:
    c = o if c is None else c
    return Bar(symbol, ts, o, max(o, c), min(o, c), c)


def _order(units: int, ts: int = 0, symbol: str = "EURUSD") -> Order:
    return Order(Order.make_client_id(symbol, ts, 0), symbol, units, ts, 0)


def test_market_order_fills_at_next_open_plus_half_spread_and_slippage() -> None:
    """A buy pays open + (spread/2 + slippage) pips; a sell receives open - the same."""
    ledger = Ledger(100_000.0, CostModel(spread_pips=1.0, slippage_pips=0.2))
    ledger.submit(_order(10_000, ts=1))
    assert [] == ledger.on_bar(_bar(1, 1.1000, symbol="GBPUSD"))  # other symbol: no fill
    (buy,) = ledger.on_bar(_bar(2, 1.2000, 1.2010))
    assert 1.2000 + 0.00007 == pytest.approx(buy.price)
    ledger.submit(_order(-10_000, ts=2))
    (sell,) = ledger.on_bar(_bar(3, 1.2100))
    assert 1.2100 - 0.00007 == pytest.approx(sell.price)
    assert 10_000 * ((1.2100 - 0.00007) - (1.2000 + 0.00007)) == pytest.approx(ledger.realized)
    assert 0 == ledger.units("EURUSD")


def test_commission_is_charged_per_million_of_usd_notional() -> None:
    """100k EURUSD at 1.2 is 120k USD notional: 30 USD/M costs 3.60."""
    ledger = Ledger(1_000.0, CostModel(commission_per_million=30.0))
    ledger.submit(_order(100_000))
    (fill,) = ledger.on_bar(_bar(1, 1.2))
    assert 3.6 == pytest.approx(fill.commission)
    assert 1_000.0 - 3.6 == pytest.approx(ledger.balance)


def test_usdjpy_pnl_is_converted_to_usd_at_the_closing_price() -> None:
    """Buying 100k USDJPY at 110 and selling at 111 makes 100k JPY = 900.90 USD."""
    inst = get_instrument("USDJPY")
    pos = Position("USDJPY")
    pos.apply(Fill("1", "a", "USDJPY", 100_000, 110.0, 0.0, 1), inst)
    realized = pos.apply(Fill("2", "b", "USDJPY", -100_000, 111.0, 0.0, 2), inst)
    assert 100_000 / 111.0 == pytest.approx(realized)


def test_flipping_a_position_realises_the_closed_part_and_opens_the_rest_at_the_fill() -> None:
    """Long 10k at 1.10, sell 30k at 1.12: realise 10k × 0.02, short 20k at 1.12."""
    inst = get_instrument("EURUSD")
    pos = Position("EURUSD")
    pos.apply(Fill("1", "a", "EURUSD", 10_000, 1.10, 0.0, 1), inst)
    realized = pos.apply(Fill("2", "b", "EURUSD", -30_000, 1.12, 0.0, 2), inst)
    assert 200.0 == pytest.approx(realized)
    assert -20_000 == pos.units
    assert 1.12 == pos.avg_price
    assert -20_000 * (1.13 - 1.12) == pytest.approx(pos.unrealized(1.13, inst))


def test_equity_is_balance_plus_open_pnl_at_the_last_close() -> None:
    """Equity marks open positions to the last bar's close."""
    ledger = Ledger(50_000.0)
    ledger.submit(_order(10_000))
    ledger.on_bar(_bar(1, 1.1000, 1.1050))
    assert 50_000.0 == ledger.balance
    assert 50_000.0 + 10_000 * 0.0050 == pytest.approx(ledger.equity)


def test_rebuilding_from_stored_fills_gives_the_same_book() -> None:
    """Applying the same fills to a fresh ledger reproduces balance and positions."""
    live = Ledger(10_000.0, CostModel(spread_pips=0.8, commission_per_million=20))
    fills = []
    for i, (units, price) in enumerate([(1000, 1.1), (-2000, 1.2), (1000, 1.15)]):
        live.submit(_order(units, ts=i))
        fills += live.on_bar(_bar(i + 1, price))
    rebuilt = Ledger(10_000.0)
    for fill in fills:
        rebuilt.apply(fill)
    assert live.balance == pytest.approx(rebuilt.balance)
    assert live.units("EURUSD") == rebuilt.units("EURUSD")
    assert live.fill_seq == rebuilt.fill_seq
