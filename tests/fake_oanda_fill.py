"""One fill on the fake OANDA account: the trades it reduces or closes, and its booking.

Every ``ORDER_FILL`` the fake writes comes from here: a market order's
(:mod:`tests.fake_oanda_orders`, also for trade and position closes) and a triggered
dependent order's (:mod:`tests.fake_oanda_protect`). Fields follow OANDA's v20
``OrderFillTransaction`` (developer.oanda.com/rest-live-v20/transaction-df; §5 of the
subset doc); the optional ones are written only where the caller gives them, as before
this module existed (a dependent order's fill has no ``fullPrice`` nor
``halfSpreadCost`` here).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fake_oanda_book import MONEY, SPECS, ZERO, Book, Trade, money, units_str


def book_fill(
    book: Book,
    batch: str,
    *,
    order_id: str,
    instrument: str,
    units: Decimal,
    price: Decimal,
    reason: str,
    pl: Decimal,
    legs: dict[str, list[dict[str, Any]]],
    commission: Decimal = ZERO,
    client_order_id: str | None = None,
    full_price: dict[str, Any] | None = None,
    half_spread_cost: str | None = None,
    opened: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Book the fill's P&L and commission on the account; append its ``ORDER_FILL``."""
    spec = SPECS[instrument]
    paid = commission.quantize(MONEY)
    book.balance += pl - paid
    book.realized += pl
    book.commission_paid += paid
    return book.txn(
        "ORDER_FILL",
        batch,
        orderID=order_id,
        **({"clientOrderID": client_order_id} if client_order_id else {}),
        instrument=instrument,
        units=units_str(units),
        price=spec.px(price),
        fullVWAP=spec.px(price),
        **({"fullPrice": full_price} if full_price is not None else {}),
        reason=reason,
        pl=money(pl),
        financing=money(ZERO),
        commission=money(commission),
        guaranteedExecutionFee=money(ZERO),
        **({"halfSpreadCost": half_spread_cost} if half_spread_cost is not None else {}),
        accountBalance=money(book.balance),
        **({"tradeOpened": opened} if opened else {}),
        **({"tradesClosed": legs["closed"]} if legs["closed"] else {}),
        **({"tradeReduced": legs["reduced"][0]} if legs["reduced"] else {}),
    )


def reduce_trades(
    book: Book,
    instrument: str,
    units: Decimal,
    price: Decimal,
    half_spread: Decimal,
    targets: list[Trade] | None,
) -> tuple[dict[str, list[dict[str, Any]]], Decimal, Decimal]:
    """Reduce or close ``targets`` (``None``: the account's default, see ``execute``) by
    ``units`` at ``price``: the ``closed``/``reduced`` legs, the units left, the P&L (USD).
    """
    if targets is None:
        targets = (
            [] if book.hedging else [t for t in book.open_trades() if t.instrument == instrument]
        )
    legs: dict[str, list[dict[str, Any]]] = {"closed": [], "reduced": []}
    remaining = units
    pl = ZERO
    for trade in targets:
        if not remaining or (trade.current_units > 0) == (remaining > 0):
            continue
        size = min(abs(remaining), abs(trade.current_units))
        signed = size if remaining > 0 else -size
        sign = 1 if trade.current_units > 0 else -1
        trade_pl = book.usd(instrument, (price - trade.price) * size * sign, price).quantize(MONEY)
        trade.current_units += signed
        trade.realized_pl += trade_pl
        remaining -= signed
        pl += trade_pl
        leg = {
            "tradeID": trade.id,
            "units": units_str(signed),
            "price": SPECS[instrument].px(price),
            "realizedPL": money(trade_pl),
            "financing": money(ZERO),
            "halfSpreadCost": money(book.usd(instrument, half_spread * size, price)),
        }
        legs["closed" if trade.current_units == 0 else "reduced"].append(leg)
    return legs, remaining, pl
