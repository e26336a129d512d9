"""Orders on fill and the dependent orders of a trade, on the fake OANDA account.

From OANDA's v20 reference (developer.oanda.com/rest-live-v20/order-df and
trade-df; the subset doc §5-6): a ``MarketOrderRequest`` may carry ``stopLossOnFill``
(``price`` or ``distance`` from the fill, not both), ``takeProfitOnFill`` (``price``) and
``trailingStopLossOnFill`` (``distance``), time in force ``GTC``/``GTD``/``GFD``. When the
order opens a trade, each becomes an order of its own in the same batch
(``STOP_LOSS_ORDER``, ``TAKE_PROFIT_ORDER``, ``TRAILING_STOP_LOSS_ORDER``, reason
``ON_FILL``) linked to the trade. A triggered one fills with an ``ORDER_FILL`` whose
``reason`` is ``STOP_LOSS_ORDER`` / ``TAKE_PROFIT_ORDER`` / ``TRAILING_STOP_LOSS_ORDER``
and which closes the trade; when a trade closes, by any order, its remaining dependent
orders are cancelled (``ORDER_CANCEL`` reason ``LINKED_TRADE_CLOSED``).

Simplifications of the fake: a dependent order is checked on every pushed price (a long
trade's on the bid, a short's on the ask) and fills at that price, so a price that jumps
over the level fills beyond it, like a gap at OANDA; a trailing stop follows the best
price pushed. Prices and distances are checked against the instrument's precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tests.fake_oanda_book import (
    SPECS,
    Book,
    Spec,
    Trade,
    decimals,
    to_decimal,
)
from tests.fake_oanda_fill import book_fill, reduce_trades

ON_FILL = {
    "stopLossOnFill": ("STOP_LOSS", "STOP_LOSS_ORDER"),
    "takeProfitOnFill": ("TAKE_PROFIT", "TAKE_PROFIT_ORDER"),
    "trailingStopLossOnFill": ("TRAILING_STOP_LOSS", "TRAILING_STOP_LOSS_ORDER"),
}


def parse_on_fill(order: Mapping[str, Any], spec: Spec) -> tuple[dict[str, Any], str | None]:
    """The on-fill details of an order request, or a v20 reject reason."""
    out: dict[str, Any] = {}
    for key, (kind, _reason) in ON_FILL.items():
        if key not in order:
            continue
        details = order[key]
        prefix = kind + "_ON_FILL"
        if not isinstance(details, Mapping):
            return {}, prefix + "_INVALID"
        if details.get("timeInForce", "GTC") not in ("GTC", "GTD", "GFD"):
            return {}, prefix + "_TIME_IN_FORCE_INVALID"
        price = to_decimal(details["price"]) if "price" in details else None
        dist = to_decimal(details["distance"]) if "distance" in details else None
        if kind == "TAKE_PROFIT" and (price is None or dist is not None):
            return {}, prefix + "_PRICE_MISSING"
        if kind == "TRAILING_STOP_LOSS" and (dist is None or price is not None):
            return {}, prefix + "_DISTANCE_MISSING"
        if kind == "STOP_LOSS" and (price is None) == (dist is None):
            return {}, prefix + "_PRICE_DISTANCE_MAXIMUM_EXCEEDED"  # exactly one is allowed
        for value in (price, dist):
            if value is not None and (value <= 0 or decimals(value) > spec.display_precision):
                return {}, prefix + "_PRICE_PRECISION_EXCEEDED"
        out[kind] = {"price": price, "distance": dist}
    return out, None


def attach(book: Book, trade: Trade, details: Mapping[str, Any], batch: str) -> None:
    """Create the trade's dependent orders after the fill that opened it."""
    spec = SPECS[trade.instrument]
    side = 1 if trade.current_units > 0 else -1
    for kind, d in details.items():
        price, dist = d["price"], d["distance"]
        if kind == "STOP_LOSS" and dist is not None:
            price = trade.price - side * dist
        fields: dict[str, Any] = {"tradeID": trade.id, "reason": "ON_FILL", "timeInForce": "GTC"}
        if price is not None:
            fields["price"] = spec.px(price)
        if dist is not None:
            fields["distance"] = str(dist)
        txn = book.txn(kind + "_ORDER", batch, **fields)
        trade.dependents[kind] = {
            "id": txn["id"],
            "price": price,
            "distance": dist,
            "best": trade.price,
        }


def cancel_dependents(book: Book, trade: Trade, batch: str, keep: str | None = None) -> None:
    """A closed trade's other dependent orders are cancelled (``LINKED_TRADE_CLOSED``)."""
    for kind, dep in list(trade.dependents.items()):
        if kind != keep:
            book.txn("ORDER_CANCEL", batch, orderID=dep["id"], reason="LINKED_TRADE_CLOSED")
    trade.dependents.clear()


def _level(kind: str, dep: dict[str, Any], side: int, market: Decimal) -> Decimal:
    if kind != "TRAILING_STOP_LOSS":
        return dep["price"]  # type: ignore[no-any-return]
    best = max(dep["best"], market) if side > 0 else min(dep["best"], market)
    dep["best"] = best
    return best - side * dep["distance"]  # type: ignore[no-any-return]


def trigger(book: Book, instrument: str) -> list[dict[str, Any]]:
    """Fill every dependent order of ``instrument`` that the current price triggers."""
    tick = book.tick(instrument)
    if tick is None:
        return []
    fills = []
    for trade in list(book.open_trades()):
        if trade.instrument != instrument or not trade.dependents:
            continue
        side = 1 if trade.current_units > 0 else -1
        market = tick.bid if side > 0 else tick.ask
        hit = None
        for kind in ("STOP_LOSS", "TRAILING_STOP_LOSS", "TAKE_PROFIT"):
            dep = trade.dependents.get(kind)
            if dep is None:
                continue
            level = _level(kind, dep, side, market)
            loss_side = kind != "TAKE_PROFIT"
            if (side > 0 and (market <= level if loss_side else market >= level)) or (
                side < 0 and (market >= level if loss_side else market <= level)
            ):
                hit = kind
                break
        if hit is None:
            continue
        dep = trade.dependents[hit]
        units = -trade.current_units
        half_spread = (tick.ask - tick.bid) / 2
        legs, _rest, pl = reduce_trades(book, instrument, units, market, half_spread, [trade])
        batch = str(len(book.transactions) + 1)
        fill = book_fill(
            book,
            batch,
            order_id=dep["id"],
            instrument=instrument,
            units=units,
            price=market,
            reason=ON_FILL_REASON[hit],
            pl=pl,
            legs=legs,  # the whole trade: always one closed leg
        )
        cancel_dependents(book, trade, batch, keep=hit)
        fills.append(fill)
    return fills


ON_FILL_REASON = {kind: reason for kind, reason in ON_FILL.values()}
