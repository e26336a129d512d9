"""Start-up reconciliation in process, against the paper book (a broker that shares the file)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import structlog

from forexd.daemon.reconcile import reconcile
from forexd.domain import Bar, Fill, Order, OrderStatus, Position, get_instrument
from forexd.storage.db import read_all
from forexd.storage.orders import TradeRecord
from tests._store import restore_paper, running_writer

pytestmark = pytest.mark.anyio

H1 = 3600 * 1_000_000_000
T0 = 1_500_000_000 * 1_000_000_000


async def test_reconcile_cancels_the_unsent_books_the_lost_fill_and_reports_drift(
    tmp_path: Path,
) -> None:
    """Unsent order cancelled, the broker's unrecorded fill booked, a position drift reported."""
    db = tmp_path / "forexd.db"
    unsent = Order("EURUSD-1-0", "EURUSD", 1000, T0, 1)  # written, then the daemon died
    sent = Order("EURUSD-2-0", "EURUSD", -400, T0 + H1, 2)  # filled; the fill was never booked
    booked = Order("GBPUSD-1-0", "GBPUSD", 500, T0, 3)  # booked here, unknown to the broker
    gbp = Fill("G1", booked.client_id, "GBPUSD", 500, 1.3, 0.0, T0 + H1)
    async with running_writer(db) as writer:
        record = TradeRecord(writer)
        broker = await restore_paper(db, writer)
        for order in (unsent, sent, booked):
            await record.order_written(order)
        record.order_status(sent.client_id, OrderStatus.SUBMITTED)
        await broker.submit(sent)
        (lost,) = await broker.on_bar(Bar("EURUSD", T0 + 2 * H1, 1.2, 1.2, 1.2, 1.2))
        position = Position("GBPUSD")
        record.fill(gbp, position.apply(gbp, get_instrument("GBPUSD")), position)
        await writer.flush()
        report = await reconcile(db, broker, writer, structlog.get_logger())
        orders = await read_all(db, "SELECT client_id, status, error FROM orders ORDER BY 1")
        fills = await read_all(db, "SELECT fill_id, client_id FROM fills ORDER BY rowid")
        positions = await read_all(db, "SELECT symbol, units FROM positions ORDER BY 1")
        events = await read_all(db, "SELECT kind, symbol, detail FROM events ORDER BY rowid")
    assert {
        "orders_checked": 2,
        "orders_cancelled": [unsent.client_id],
        "orders_unresolved": [],
        "fills_recovered": [lost.fill_id],
        "position_mismatches": {"GBPUSD": [500, 0]},
    } == report.to_dict()
    assert [
        (unsent.client_id, "cancelled", "never reached the broker"),
        (sent.client_id, "filled", None),
        (booked.client_id, "filled", None),
    ] == sorted(orders)
    assert [("G1", booked.client_id), (lost.fill_id, sent.client_id)] == fills
    assert [("EURUSD", -400), ("GBPUSD", 500)] == positions
    assert [
        ("order_not_at_broker", "EURUSD", {"client_id": unsent.client_id}),
        ("fill_recovered", "EURUSD", {"client_id": sent.client_id, "fill_id": lost.fill_id}),
        ("position_mismatch", "GBPUSD", {"db": 500, "broker": 0}),
    ] == [(kind, sym, json.loads(detail)) for kind, sym, detail in events]


async def test_reconcile_on_an_empty_store_checks_nothing_and_repairs_nothing(
    tmp_path: Path,
) -> None:
    """A first start: no order to look up, no fill, no position on either side."""
    db = tmp_path / "forexd.db"
    async with running_writer(db) as writer:
        broker = await restore_paper(db, writer)
        with anyio.fail_after(10):
            report = await reconcile(db, broker, writer, structlog.get_logger())
    assert (0, [], {}) == (
        report.orders_checked,
        report.fills_recovered,
        report.position_mismatches,
    )
