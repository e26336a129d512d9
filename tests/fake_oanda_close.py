"""Closing trades and positions on the fake OANDA account (§6 of the subset doc).

Both are FOK market orders with explicit targets (``REDUCE_ONLY``): a trade close reduces
one trade, all or part; a position close empties one side. ``ALL`` on a side that holds
nothing is rejected and sinks the whole request, as observed on the real API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fake_oanda_book import REJECT_MESSAGES, SPECS, ZERO, Book, to_decimal
from tests.fake_oanda_orders import answer, execute, reject


def close_trade(book: Book, spec: str, request: Any) -> tuple[int, dict[str, Any]]:
    """``PUT /trades/{spec}/close``: all or part of one trade."""
    trade_id = spec
    if spec.startswith("@"):
        found = [
            t for t in book.trades.values() if (t.client_extensions or {}).get("id") == spec[1:]
        ]
        trade_id = found[0].id if found else ""
    trade = book.trades.get(trade_id)
    if trade is None or not trade.current_units:
        return 404, {
            "errorCode": "NO_SUCH_TRADE",
            "errorMessage": "The Trade specified does not exist",
            "lastTransactionID": book.last_id,
        }
    raw = (request or {}).get("units", "ALL") if isinstance(request, Mapping) else "ALL"
    size = abs(trade.current_units) if raw == "ALL" else to_decimal(raw)
    if size is None or size <= 0 or size > abs(trade.current_units):
        order = {"instrument": trade.instrument, "units": str(raw)}
        return reject(book, order, "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE")
    units = -size if trade.current_units > 0 else size
    created = execute(
        book,
        trade.instrument,
        units,
        create_fields={
            "reason": "TRADE_CLOSE",
            "timeInForce": "FOK",
            "positionFill": "REDUCE_ONLY",
            "tradeClose": {"tradeID": trade.id, "units": str(raw)},
        },
        fill_reason="MARKET_ORDER_TRADE_CLOSE",
        targets=[trade],
    )
    return 200, answer(book, created)


def close_position(book: Book, instrument: str, request: Any) -> tuple[int, dict[str, Any]]:
    """``PUT /positions/{instrument}/close``: ``ALL`` on a flat side sinks the request."""
    if instrument not in SPECS:
        return 400, {"errorMessage": "Invalid value specified for 'instrument'"}
    body = request if isinstance(request, Mapping) else {}
    asked = {s: body.get(f"{s}Units", "NONE") for s in ("long", "short")}
    if all(v == "NONE" for v in asked.values()):
        return 400, {"errorMessage": "Invalid value specified for 'longUnits'/'shortUnits'"}
    plans = []
    for side, raw in asked.items():
        if raw == "NONE":
            continue
        legs = [
            t
            for t in book.open_trades()
            if t.instrument == instrument and (t.current_units > 0) == (side == "long")
        ]
        held = abs(sum((t.current_units for t in legs), ZERO))
        size = held if raw == "ALL" else to_decimal(raw)
        if not held or size is None or size <= 0 or size > held:
            txn = book.txn(
                "MARKET_ORDER_REJECT",
                None,
                instrument=instrument,
                reason="POSITION_CLOSEOUT",
                rejectReason="CLOSEOUT_POSITION_DOESNT_EXIST",
            )
            return 400, {
                f"{side}OrderRejectTransaction": txn,
                "relatedTransactionIDs": [txn["id"]],
                "lastTransactionID": book.last_id,
                "errorCode": "CLOSEOUT_POSITION_DOESNT_EXIST",
                "errorMessage": REJECT_MESSAGES["CLOSEOUT_POSITION_DOESNT_EXIST"],
            }
        plans.append((side, raw, -size if side == "long" else size, legs))
    body_out: dict[str, Any] = {}
    related: list[str] = []
    for side, raw, units, legs in plans:
        created = execute(
            book,
            instrument,
            units,
            create_fields={
                "reason": "POSITION_CLOSEOUT",
                "timeInForce": "FOK",
                "positionFill": "REDUCE_ONLY",
                f"{side}PositionCloseout": {"instrument": instrument, "units": str(raw)},
            },
            fill_reason="MARKET_ORDER_POSITION_CLOSEOUT",
            targets=legs,
        )
        for key, txn in created.items():
            body_out[f"{side}Order{key[0].upper()}{key[1:]}Transaction"] = txn
            related.append(txn["id"])
    body_out.update(relatedTransactionIDs=related, lastTransactionID=book.last_id)
    return 200, body_out
