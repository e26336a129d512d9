"""Orders, fills and per-symbol progress: the trading record, written and read in one place.

Everything a symbol actor persists goes through :class:`TradeRecord` (writes, through the
daemon's one :class:`~forexd.storage.db.StorageWriter`) and everything it rebuilds after a
(re)start comes from :func:`load_actor_state` (reads, on its own connection, off the event
loop). Reconciliation writes the same rows through the same record, and reads what it
compares with the broker through :func:`load_book_state`; the paper broker writes events
with the same statement. So the order of writes is the writer's FIFO order whoever
submits them, and both readers replay the fills the same way.

Only :meth:`TradeRecord.order_written` waits for its commit: an order must be on disk
*before* it is sent. Every other write is queued (group-committed by the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forexd.domain import Bar, Fill, Order, OrderStatus, Position, get_instrument
from forexd.storage.db import StorageWriter, now_ns, open_sync

SQL_CANDLE = (
    "INSERT OR IGNORE INTO candles (symbol, timeframe, ts, open, high, low, close, volume) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_PROGRESS = (
    "INSERT INTO actor_progress (symbol, last_bar_ts, bars_seen) VALUES (?, ?, ?) "
    "ON CONFLICT(symbol) DO UPDATE SET last_bar_ts = excluded.last_bar_ts, "
    "bars_seen = excluded.bars_seen"
)
SQL_ORDER = (
    "INSERT INTO orders (client_id, symbol, units, bar_ts, created_ns, status, reason, "
    "updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_ORDER_STATUS = "UPDATE orders SET status = ?, error = ?, updated_ns = ? WHERE client_id = ?"
SQL_FILL = (
    "INSERT OR IGNORE INTO fills (fill_id, client_id, symbol, units, price, commission, ts, "
    "realized_pnl, recorded_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_POSITION = (
    "INSERT INTO positions (symbol, units, avg_price, realized_pnl, commission, updated_ns) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET units = excluded.units, "
    "avg_price = excluded.avg_price, realized_pnl = excluded.realized_pnl, "
    "commission = excluded.commission, updated_ns = excluded.updated_ns"
)
SQL_EVENT = "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, ?, ?, ?)"
SQL_EQUITY = (
    "INSERT INTO equity (ts, balance, equity, unrealized, recorded_ns) VALUES (?, ?, ?, ?, ?)"
)

IN_FLIGHT = (OrderStatus.PENDING.value, OrderStatus.SUBMITTED.value)


def queue_fill(writer: StorageWriter, fill: Fill, realized: float, position: Position) -> None:
    """Queue a fill and the position it produced (the live path and reconciliation)."""
    now = now_ns()
    writer.submit(
        SQL_FILL,
        (
            fill.fill_id,
            fill.client_id,
            fill.symbol,
            fill.units,
            fill.price,
            fill.commission,
            fill.ts,
            realized,
            now,
        ),
    )
    writer.submit(
        SQL_POSITION,
        (
            position.symbol,
            position.units,
            position.avg_price,
            position.realized_pnl,
            position.commission,
            now,
        ),
    )


class TradeRecord:
    """The writes of the trading record, bound to the daemon's storage writer.

    Args:
        writer: the daemon's one storage writer.
    """

    def __init__(self, writer: StorageWriter) -> None:
        self.writer = writer

    async def order_written(self, order: Order) -> None:
        """Write an order as ``pending`` and wait for its commit (before it is sent).

        Raises:
            StorageError: the write failed; the order must not be sent.
        """
        await self.writer.execute(
            SQL_ORDER,
            (
                order.client_id,
                order.symbol,
                order.units,
                order.bar_ts,
                order.created_ns,
                OrderStatus.PENDING.value,
                order.reason,
                now_ns(),
            ),
        )

    def order_status(self, client_id: str, status: OrderStatus, error: str | None = None) -> None:
        """Queue an order's new status (and the broker's error, if any)."""
        self.writer.submit(SQL_ORDER_STATUS, (status.value, error, now_ns(), client_id))

    def fill(self, fill: Fill, realized: float, position: Position) -> None:
        """Queue a fill, the position after it, and its order's ``filled`` status."""
        queue_fill(self.writer, fill, realized, position)
        self.order_status(fill.client_id, OrderStatus.FILLED)

    def event(self, kind: str, symbol: str, detail: str) -> None:
        """Queue an audit event (``events`` table)."""
        self.writer.submit(SQL_EVENT, (now_ns(), kind, symbol, detail))

    def candle(self, timeframe: str, bar: Bar) -> None:
        """Queue a bar into the candle store (duplicates are ignored)."""
        self.writer.submit(
            SQL_CANDLE,
            (bar.symbol, timeframe, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume),
        )

    def progress(self, symbol: str, last_bar_ts: int, bars_seen: int) -> None:
        """Queue how far the symbol's actor has processed its feed."""
        self.writer.submit(SQL_PROGRESS, (symbol, last_bar_ts, bars_seen))

    def equity(self, ts: int, balance: float, equity: float, unrealized: float) -> None:
        """Queue an account snapshot (USD)."""
        self.writer.submit(SQL_EQUITY, (ts, balance, equity, unrealized, now_ns()))


@dataclass(slots=True)
class ActorState:
    """What an actor rebuilds from the store when it (re)starts.

    Attributes:
        position: the net position from every recorded fill.
        orders: status of every order written for the symbol, by client id.
        pending_units: units of orders still pending or submitted (in flight).
        last_bar_ts: the newest bar the actor had finished, ``None`` on a first start.
        bars_seen: bars processed so far over all lives.
        warm_bars: up to ``capacity`` stored candles ending at ``last_bar_ts``, oldest first.
    """

    position: Position
    orders: dict[str, str] = field(default_factory=dict)
    pending_units: int = 0
    last_bar_ts: int | None = None
    bars_seen: int = 0
    warm_bars: list[Bar] = field(default_factory=list)


@dataclass(slots=True)
class BookState:
    """The whole recorded book, as reconciliation compares it with the broker's.

    Attributes:
        open_orders: orders still pending or submitted (outcome not seen), oldest first.
        fill_ids: the id of every recorded fill.
        positions: the net position per symbol from every recorded fill.
    """

    open_orders: list[Order] = field(default_factory=list)
    fill_ids: set[str] = field(default_factory=set)
    positions: dict[str, Position] = field(default_factory=dict)


def _recorded_fills(conn: sqlite3.Connection, symbol: str | None = None) -> Iterator[Fill]:
    """Every recorded fill (of ``symbol``, or of all symbols), in booking order.

    Booking order is the order the broker's ledger applied them; by bar time the average
    price (and so realised P&L) could differ by cents (issue 10).
    """
    where, args = ("WHERE symbol = ? ", (symbol,)) if symbol is not None else ("", ())
    for row in conn.execute(
        "SELECT fill_id, client_id, symbol, units, price, commission, ts FROM fills "
        f"{where}ORDER BY rowid",
        args,
    ):
        yield Fill(row[0], row[1], row[2], int(row[3]), row[4], row[5], int(row[6]))


def load_book_state(db_path: Path) -> BookState:
    """Read the open orders, fill ids and net positions (blocking: call it off the loop).

    Raises:
        StorageError: the store cannot be opened.
    """
    conn = open_sync(db_path)
    try:
        book = BookState()
        for cid, sym, units, bar_ts, created_ns in conn.execute(
            "SELECT client_id, symbol, units, bar_ts, created_ns FROM orders "
            "WHERE status IN (?, ?) ORDER BY created_ns",
            IN_FLIGHT,
        ):
            book.open_orders.append(Order(cid, sym, int(units), int(bar_ts), int(created_ns)))
        for fill in _recorded_fills(conn):
            book.fill_ids.add(fill.fill_id)
            position = book.positions.setdefault(fill.symbol, Position(fill.symbol))
            position.apply(fill, get_instrument(fill.symbol))
        return book
    finally:
        conn.close()


def load_actor_state(db_path: Path, symbol: str, timeframe: str, capacity: int) -> ActorState:
    """Read one symbol's trading state (blocking: call it off the event loop).

    Args:
        db_path: the store.
        symbol: the instrument.
        timeframe: the candles the actor trades (for its warm-up window).
        capacity: bars of history the actor keeps.

    Raises:
        StorageError: the store cannot be opened.
    """
    instrument = get_instrument(symbol)
    conn = open_sync(db_path)
    try:
        state = ActorState(Position(symbol))
        for fill in _recorded_fills(conn, symbol):
            state.position.apply(fill, instrument)
        for cid, units, status in conn.execute(
            "SELECT client_id, units, status FROM orders WHERE symbol = ?", (symbol,)
        ):
            state.orders[cid] = status
            if status in IN_FLIGHT:
                state.pending_units += int(units)
        row = conn.execute(
            "SELECT last_bar_ts, bars_seen FROM actor_progress WHERE symbol = ?", (symbol,)
        ).fetchone()
        if row is None:
            return state
        state.last_bar_ts, state.bars_seen = int(row[0]), int(row[1])
        warm = conn.execute(
            "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ? "
            "AND timeframe = ? AND ts <= ? ORDER BY ts DESC LIMIT ?",
            (symbol, timeframe, state.last_bar_ts, capacity),
        ).fetchall()
        state.warm_bars = [Bar(symbol, int(t), o, h, lo, c, v) for t, o, h, lo, c, v in warm]
        state.warm_bars.reverse()
        return state
    finally:
        conn.close()
