"""Market orders on the fake OANDA account (§5 of the subset doc).

``POST /orders`` answers 201 with a fill, 201 with a cancel (no fill), or 400 with a
reject transaction or only an ``errorMessage``. Buys fill at the ask and sells at the bid
(mid ± half the spread). On a netting account an order reduces opposite trades first in,
first out and opens a trade with the rest, whose id is the fill's; on a hedging account it
only opens. MARKET orders only; orders on fill (stop loss, take profit, trailing stop)
become the opened trade's dependent orders (:mod:`tests.fake_oanda_protect`).
``positionFill`` values other than ``DEFAULT`` are echoed but not honoured.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tests.fake_oanda_book import (
    REJECT_MESSAGES,
    SPECS,
    ZERO,
    Book,
    Spec,
    Trade,
    decimals,
    money,
    to_decimal,
    units_str,
)
from tests.fake_oanda_fill import book_fill, reduce_trades
from tests.fake_oanda_protect import ON_FILL, attach, cancel_dependents, parse_on_fill


def create_order(book: Book, request: Any) -> tuple[int, dict[str, Any]]:
    """``POST /orders`` (§5): 201 fill or cancel, 400 reject or schema error."""
    order = request.get("order") if isinstance(request, Mapping) else None
    if not isinstance(order, Mapping):
        return 400, {"errorMessage": "Invalid value specified for 'order'"}
    if order.get("type") != "MARKET":
        return 400, {"errorMessage": "Invalid value specified for 'order.type'"}
    inst = order.get("instrument")
    if inst not in SPECS:
        return 400, {"errorMessage": "Invalid value specified for 'order.instrument'"}
    units = to_decimal(order.get("units"))
    if units is None:
        return 400, {"errorMessage": "Invalid value specified for 'order.units'"}
    spec = SPECS[inst]
    on_fill, bad = parse_on_fill(order, spec)
    ext = order.get("clientExtensions") or None
    bound = to_decimal(order.get("priceBound")) if "priceBound" in order else None
    reason = book.next_reject
    book.next_reject = None
    if reason is None:
        reason = _validate(book, order, spec, units, ext, bound) or bad
    if reason is not None:
        return reject(book, order, reason)
    created = execute(
        book,
        inst,
        units,
        create_fields={
            "reason": "CLIENT_ORDER",
            "timeInForce": order.get("timeInForce", "FOK"),
            "positionFill": order.get("positionFill", "DEFAULT"),
            **({"clientExtensions": ext} if ext else {}),
            **({"priceBound": order["priceBound"]} if bound is not None else {}),
            **(
                {"tradeClientExtensions": order["tradeClientExtensions"]}
                if order.get("tradeClientExtensions")
                else {}
            ),
            **{k: order[k] for k in ON_FILL if k in order},
        },
        fill_reason="MARKET_ORDER",
        targets=None,
        bound=bound,
        on_fill=on_fill,
    )
    return 201, answer(book, created)


def _validate(
    book: Book,
    order: Mapping[str, Any],
    spec: Spec,
    units: Decimal,
    ext: Mapping[str, Any] | None,
    bound: Decimal | None,
) -> str | None:
    if units == 0:
        return "UNITS_INVALID"
    if decimals(units) > spec.trade_units_precision:
        return "UNITS_PRECISION_EXCEEDED"
    if abs(units) > spec.maximum_order_units:
        return "UNITS_LIMIT_EXCEEDED"
    if order.get("timeInForce", "FOK") not in ("FOK", "IOC"):
        return "TIME_IN_FORCE_INVALID"
    if bound is not None and decimals(bound) > spec.display_precision:
        return "PRICE_BOUND_PRECISION_EXCEEDED"
    client_id = (ext or {}).get("id")
    existing = book.order("@" + client_id) if client_id else None
    # The spec's wording: "already assigned to another *pending* Order".
    if existing is not None and existing["state"] == "PENDING":
        return "CLIENT_ORDER_ID_ALREADY_EXISTS"
    return None


def reject(book: Book, order: Mapping[str, Any], reason: str) -> tuple[int, dict[str, Any]]:
    echo = {
        k: order[k]
        for k in ("instrument", "units", "timeInForce", "positionFill", "clientExtensions")
        if k in order
    }
    txn = book.txn("MARKET_ORDER_REJECT", None, reason="CLIENT_ORDER", rejectReason=reason, **echo)
    return 400, {
        "orderRejectTransaction": txn,
        "relatedTransactionIDs": [txn["id"]],
        "lastTransactionID": book.last_id,
        "errorCode": reason,
        "errorMessage": REJECT_MESSAGES.get(reason, reason),
    }


def answer(book: Book, created: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        f"order{k[0].upper()}{k[1:]}Transaction": txn for k, txn in created.items()
    }
    body["relatedTransactionIDs"] = [t["id"] for t in created.values()]
    body["lastTransactionID"] = book.last_id
    return body


def execute(
    book: Book,
    instrument: str,
    units: Decimal,
    *,
    create_fields: dict[str, Any],
    fill_reason: str,
    targets: list[Trade] | None,
    bound: Decimal | None = None,
    on_fill: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Create a MARKET_ORDER and fill or cancel it at once (FOK).

    ``targets`` are the trades it may reduce (``None``: the account's default —
    opposite trades first-in-first-out on a netting account, none on a hedging one);
    with explicit targets nothing new is opened.
    """
    spec = SPECS[instrument]
    create = book.txn(
        "MARKET_ORDER", None, instrument=instrument, units=units_str(units), **create_fields
    )
    batch = create["id"]
    ext = create_fields.get("clientExtensions") or {}
    record: dict[str, Any] = {
        "id": batch,
        "createTime": book.now_ns,
        "type": "MARKET",
        "instrument": instrument,
        "units": units_str(units),
        "timeInForce": create_fields.get("timeInForce", "FOK"),
        "positionFill": create_fields.get("positionFill", "DEFAULT"),
        "state": "PENDING",
        **({"clientExtensions": ext} if ext else {}),
    }
    book.orders[batch] = record
    if ext.get("id"):
        book.client_orders[ext["id"]] = batch
    tick = book.tick(instrument)
    price = None if tick is None else (tick.ask if units > 0 else tick.bid)
    cancel = book.next_cancel
    book.next_cancel = None
    if cancel is None and (book.halted or tick is None or price is None):
        cancel = "MARKET_HALTED"
    elif (
        cancel is None
        and bound is not None
        and price is not None
        and ((units > 0 and price > bound) or (units < 0 and price < bound))
    ):
        cancel = "BOUNDS_VIOLATION"
    if cancel is None and targets is None:
        nav = book.balance + sum((book.unrealized(t) for t in book.open_trades()), ZERO)
        if book.margin((instrument, units)) > nav:
            cancel = "INSUFFICIENT_MARGIN"
    if cancel is not None or tick is None or price is None:
        txn = book.txn(
            "ORDER_CANCEL",
            batch,
            orderID=batch,
            reason=cancel,
            **({"clientOrderID": ext["id"]} if ext.get("id") else {}),
        )
        record.update(
            state="CANCELLED", cancellingTransactionID=txn["id"], cancelledTime=book.now_ns
        )
        return {"create": create, "cancel": txn}
    fill_id = str(len(book.transactions) + 1)  # the trade it opens takes the fill's id
    half_spread = (tick.ask - tick.bid) / 2
    legs, remaining, pl = reduce_trades(book, instrument, units, price, half_spread, targets)
    opened = None
    if remaining and targets is None:
        trade = Trade(fill_id, instrument, price, book.now_ns, remaining, remaining)
        if create_fields.get("tradeClientExtensions"):
            trade.client_extensions = create_fields["tradeClientExtensions"]
        book.trades[fill_id] = trade
        opened = {
            "tradeID": fill_id,
            "units": units_str(remaining),
            "price": spec.px(price),
            "halfSpreadCost": money(book.usd(instrument, half_spread * abs(remaining), price)),
            "initialMarginRequired": money(
                abs(remaining) * book.unit_value(instrument) * spec.margin_rate
            ),
        }
    notional = abs(units) * (Decimal(1) if spec.base == "USD" else price)
    fill = book_fill(
        book,
        batch,
        order_id=batch,
        client_order_id=ext.get("id"),
        instrument=instrument,
        units=units,
        price=price,
        full_price={
            k: v for k, v in book.price_message(instrument, tick).items() if k != "tradeable"
        },
        reason=fill_reason,
        pl=pl,
        commission=notional * book.commission_per_million / Decimal(1_000_000),
        half_spread_cost=money(book.usd(instrument, half_spread * abs(units), price)),
        legs=legs,
        opened=opened,
    )
    assert fill["id"] == fill_id
    for leg in legs["closed"]:  # v20: a closed trade's dependent orders are cancelled
        cancel_dependents(book, book.trades[leg["tradeID"]], batch)
    if opened and on_fill:
        attach(book, book.trades[fill_id], on_fill, batch)
    record.update(state="FILLED", fillingTransactionID=fill_id, filledTime=book.now_ns)
    if opened:
        record["tradeOpenedID"] = fill_id
    if legs["reduced"]:
        record["tradeReducedID"] = legs["reduced"][0]["tradeID"]
    if legs["closed"]:
        record["tradeClosedIDs"] = [leg["tradeID"] for leg in legs["closed"]]
    return {"create": create, "fill": fill}
