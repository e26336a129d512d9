"""storage/orders.py: what an actor writes is exactly what its next life loads."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from forexd.domain import Bar, Fill, Order, OrderStatus, Position, get_instrument
from forexd.storage.db import StorageWriter
from forexd.storage.orders import TradeRecord, load_actor_state

pytestmark = pytest.mark.anyio

H1 = 3600 * 1_000_000_000


async def test_orders_fills_progress_and_candles_round_trip_into_an_actors_state(
    tmp_path: Path,
) -> None:
    """Position from fills, in-flight units from open orders, progress and warm-up bars."""
    db = tmp_path / "forexd.db"
    writer = StorageWriter(db)
    eurusd = get_instrument("EURUSD")
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        record = TradeRecord(writer)
        bars = [Bar("EURUSD", i * H1, 1.1, 1.101, 1.099, 1.1 + i / 1e4, 5.0) for i in range(6)]
        for bar in bars:
            record.candle("H1", bar)
        filled = Order("EURUSD-1-0", "EURUSD", 1000, H1, 1, "t")
        rejected = Order("EURUSD-2-0", "EURUSD", -500, 2 * H1, 2, "t")
        in_flight = Order("EURUSD-3-0", "EURUSD", 300, 3 * H1, 3, "t")
        for order in (filled, rejected, in_flight):
            await record.order_written(order)
        position = Position("EURUSD")
        fill = Fill("f1", filled.client_id, "EURUSD", 1000, 1.1002, 0.5, 2 * H1)
        record.fill(fill, position.apply(fill, eurusd), position)
        record.order_status(rejected.client_id, OrderStatus.REJECTED, "insufficient margin")
        record.order_status(in_flight.client_id, OrderStatus.SUBMITTED)
        record.progress("EURUSD", 4 * H1, 5)
        await writer.close()

    state = await anyio.to_thread.run_sync(load_actor_state, db, "EURUSD", "H1", 3)
    assert (1000, 1.1002) == (state.position.units, state.position.avg_price)
    assert {
        filled.client_id: "filled",
        rejected.client_id: "rejected",
        in_flight.client_id: "submitted",
    } == state.orders
    assert 300 == state.pending_units
    assert (4 * H1, 5) == (state.last_bar_ts, state.bars_seen)
    assert [2 * H1, 3 * H1, 4 * H1] == [b.ts for b in state.warm_bars]  # none after progress
    fresh = await anyio.to_thread.run_sync(load_actor_state, db, "GBPUSD", "H1", 3)
    assert (0, None, []) == (fresh.position.units, fresh.last_bar_ts, fresh.warm_bars)
