"""storage/orders.py: what an actor writes is exactly what its next life loads."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from forexd.domain import Bar, Fill, Order, OrderStatus, Position, get_instrument
from forexd.storage.orders import TradeRecord, load_actor_state, load_book_state
from tests._store import running_writer

pytestmark = pytest.mark.anyio

H1 = 3600 * 1_000_000_000


FILLED = Order("EURUSD-1-0", "EURUSD", 1000, H1, 1, "t")
REJECTED = Order("EURUSD-2-0", "EURUSD", -500, 2 * H1, 2, "t")
IN_FLIGHT = Order("EURUSD-3-0", "EURUSD", 300, 3 * H1, 3, "t")


async def _record_an_actors_life(db: Path) -> None:
    """Candles, three orders (filled, rejected, in flight), one fill and the progress."""
    async with running_writer(db) as writer:
        record = TradeRecord(writer)
        for i in range(6):
            record.candle("H1", Bar("EURUSD", i * H1, 1.1, 1.101, 1.099, 1.1 + i / 1e4, 5.0))
        for order in (FILLED, REJECTED, IN_FLIGHT):
            await record.order_written(order)
        position = Position("EURUSD")
        fill = Fill("f1", FILLED.client_id, "EURUSD", 1000, 1.1002, 0.5, 2 * H1)
        record.fill(fill, position.apply(fill, get_instrument("EURUSD")), position)
        record.order_status(REJECTED.client_id, OrderStatus.REJECTED, "insufficient margin")
        record.order_status(IN_FLIGHT.client_id, OrderStatus.SUBMITTED)
        record.progress("EURUSD", 4 * H1, 5)


async def test_orders_fills_progress_and_candles_round_trip_into_an_actors_state(
    tmp_path: Path,
) -> None:
    """Position from fills, in-flight units from open orders, progress and warm-up bars."""
    db = tmp_path / "forexd.db"
    await _record_an_actors_life(db)
    state = await anyio.to_thread.run_sync(load_actor_state, db, "EURUSD", "H1", 3)
    assert (1000, 1.1002) == (state.position.units, state.position.avg_price)
    assert {
        FILLED.client_id: "filled",
        REJECTED.client_id: "rejected",
        IN_FLIGHT.client_id: "submitted",
    } == state.orders
    assert 300 == state.pending_units
    assert (4 * H1, 5) == (state.last_bar_ts, state.bars_seen)
    assert [2 * H1, 3 * H1, 4 * H1] == [b.ts for b in state.warm_bars]  # none after progress
    fresh = await anyio.to_thread.run_sync(load_actor_state, db, "GBPUSD", "H1", 3)
    assert (0, None, []) == (fresh.position.units, fresh.last_bar_ts, fresh.warm_bars)


async def test_the_book_reconciliation_reads_is_the_record_the_actors_wrote(
    tmp_path: Path,
) -> None:
    """Open orders (what is looked up at the broker), every fill id, positions from fills."""
    db = tmp_path / "forexd.db"
    await _record_an_actors_life(db)
    book = await anyio.to_thread.run_sync(load_book_state, db)
    # The order's reason is not read: the broker is asked by client id.
    assert [(IN_FLIGHT.client_id, "EURUSD", 300, 3 * H1, 3)] == [
        (o.client_id, o.symbol, o.units, o.bar_ts, o.created_ns) for o in book.open_orders
    ]
    assert {"f1"} == book.fill_ids
    assert {"EURUSD": (1000, 1.1002)} == {
        s: (p.units, p.avg_price) for s, p in book.positions.items()
    }
