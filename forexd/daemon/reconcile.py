"""Start-up reconciliation: make the database agree with the broker before any trading.

Orders are written before they are sent, so after a crash the database may hold orders
whose outcome it never saw. Each one is looked up at the broker by its client id: orders
the broker never received are marked ``cancelled``; fills the broker reports but the
database lacks are recorded. Finally the net positions are compared. Every repair is
logged and stored in the ``events`` table. Nothing is ever re-sent from here.

A live broker may still execute an order sent just before the crash (OANDA can finish a
market order after the client gave up). So an order the broker does not know yet but
that was sent less than its ``absent_after_s`` ago is not cancelled: it is handed to the
broker as unresolved (``track_unresolved``) and resolved from the transaction record
like any lost answer; its row stays ``pending`` and its symbol may only reduce.

What it reads (:func:`~forexd.storage.orders.load_book_state`) and writes
(:class:`~forexd.storage.orders.TradeRecord`) is the trading record of
:mod:`forexd.storage.orders`, the same one the actors keep.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from forexd.brokers.base import Broker
from forexd.domain import OrderStatus, Position, get_instrument
from forexd.storage.db import StorageWriter
from forexd.storage.orders import TradeRecord, load_book_state, queue_fill


@dataclass(slots=True)
class ReconcileReport:
    """What reconciliation found and repaired."""

    orders_checked: int = 0
    orders_cancelled: list[str] = field(default_factory=list)
    orders_unresolved: list[str] = field(default_factory=list)
    fills_recovered: list[str] = field(default_factory=list)
    position_mismatches: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "orders_checked": self.orders_checked,
            "orders_cancelled": self.orders_cancelled,
            "orders_unresolved": self.orders_unresolved,
            "fills_recovered": self.fills_recovered,
            "position_mismatches": {k: list(v) for k, v in self.position_mismatches.items()},
        }


async def reconcile(
    db_path: Path, broker: Broker, writer: StorageWriter, log: Any
) -> ReconcileReport:
    """Bring the database in line with the broker; see the module note."""
    report = ReconcileReport()
    record = TradeRecord(writer)
    # The reads grow with history (every fill): a worker thread, not the event loop.
    book = await anyio.to_thread.run_sync(load_book_state, db_path)
    known_fills, positions = book.fill_ids, book.positions

    track = getattr(broker, "track_unresolved", None)  # live brokers only
    for order in book.open_orders:
        client_id, symbol = order.client_id, order.symbol
        report.orders_checked += 1
        state = await broker.lookup_order(client_id)
        if state is None and track is not None and track(order, time.time_ns() - order.created_ns):
            report.orders_unresolved.append(client_id)
            log.warning("reconcile_order_unresolved", client_id=client_id, symbol=symbol)
            continue
        if state is None:
            report.orders_cancelled.append(client_id)
            record.order_status(client_id, OrderStatus.CANCELLED, "never reached the broker")
            record.event("order_not_at_broker", symbol, json.dumps({"client_id": client_id}))
            log.warning("reconcile_order_cancelled", client_id=client_id, symbol=symbol)
            continue
        for fill in state.fills:
            if fill.fill_id in known_fills:
                continue
            pos = positions.setdefault(fill.symbol, Position(fill.symbol))
            realized = pos.apply(fill, get_instrument(fill.symbol))
            known_fills.add(fill.fill_id)
            report.fills_recovered.append(fill.fill_id)
            queue_fill(writer, fill, realized, pos)
            detail = {"client_id": client_id, "fill_id": fill.fill_id}
            record.event("fill_recovered", fill.symbol, json.dumps(detail))
            log.warning("reconcile_fill_recovered", client_id=client_id, fill_id=fill.fill_id)
        # The broker's word: an order it cancelled or rejected is final, not "submitted".
        record.order_status(client_id, OrderStatus.FILLED if state.fills else state.status)

    await _recover_protective(broker, known_fills, positions, record, report, log)
    at_broker = await broker.positions()
    for symbol in sorted(set(at_broker) | {s for s, p in positions.items() if p.units}):
        ours = positions[symbol].units if symbol in positions else 0
        theirs = at_broker.get(symbol, 0)
        if ours != theirs:
            report.position_mismatches[symbol] = (ours, theirs)
            record.event("position_mismatch", symbol, json.dumps({"db": ours, "broker": theirs}))
            log.error(
                "reconcile_position_mismatch", symbol=symbol, db_units=ours, broker_units=theirs
            )
    await writer.flush()
    log.info("reconciled", **report.to_dict())
    return report


async def _recover_protective(
    broker: Broker,
    known_fills: set[str],
    positions: dict[str, Position],
    record: TradeRecord,
    report: ReconcileReport,
    log: Any,
) -> None:
    """Book the stops the broker triggered while the daemon was down; then watch for more.

    Live brokers only (``protective_fills_since``). The search starts after the newest
    broker fill the database holds (OANDA fill ids are transaction ids, in order), or at
    the account's last transaction for a database without one.
    """
    since = getattr(broker, "protective_fills_since", None)
    if since is None:
        return
    numeric = [int(f) for f in known_fills if f.isdigit()]
    cursor = max(numeric) if numeric else int(getattr(broker, "last_transaction_id", 0))
    while True:
        fills, after = await since(cursor)
        for fill in fills:
            if fill.fill_id in known_fills:
                continue
            pos = positions.setdefault(fill.symbol, Position(fill.symbol))
            realized = pos.apply(fill, get_instrument(fill.symbol))
            known_fills.add(fill.fill_id)
            report.fills_recovered.append(fill.fill_id)
            queue_fill(record.writer, fill, realized, pos)
            detail = {"client_id": fill.client_id, "fill_id": fill.fill_id, "reason": fill.reason}
            record.event("protective_fill_recovered", fill.symbol, json.dumps(detail))
            log.warning("reconcile_protective_fill", symbol=fill.symbol, **detail)
        if after == cursor:
            break
        cursor = after
    broker.watch_protective(cursor)  # type: ignore[attr-defined]
