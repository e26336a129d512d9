"""The paper broker: a :class:`~forexd.brokers.ledger.Ledger` whose book lives in SQLite.

It behaves like a remote broker that happens to share the database file: it keeps its own
tables (``paper_orders``, ``paper_fills``, ``paper_account``) and writes an accepted order
and every fill durably before it reports them. After a crash the daemon can therefore ask
it, exactly as it would ask OANDA, what happened to an order whose outcome it did not see.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from forexd.brokers.base import AccountSnapshot, BrokerOrderState
from forexd.brokers.ledger import CostModel, Ledger, Protective
from forexd.domain import Bar, Fill, Order, OrderStatus, Protection
from forexd.storage.db import StorageWriter, damaged, is_damaged, now_ns, open_sync
from forexd.storage.orders import SQL_EVENT


class PaperBroker:
    """Simulated fills on replayed or live prices, persisted across restarts."""

    name = "paper"

    def __init__(self, writer: StorageWriter, ledger: Ledger) -> None:
        self._writer = writer
        self.ledger = ledger
        self._known: dict[str, Order] = {}
        self._fills_by_order: dict[str, list[Fill]] = {}
        # The newest bar seen per symbol, across restarts: the market's clock never runs
        # backwards, so a bar replayed after a restart fills nothing and marks nothing.
        self._clock: dict[str, int] = {}

    @classmethod
    def restore(
        cls, db_path: Path, writer: StorageWriter, initial_balance: float, costs: CostModel
    ) -> PaperBroker:
        """Rebuild the book from the database (an empty one starts a new account).

        The initial balance is fixed when the account is created; a later config change
        does not rewrite history (the stored value wins and is reported).
        """
        conn = open_sync(db_path)
        try:
            row = conn.execute("SELECT initial_balance FROM paper_account").fetchone()
            if row is None:
                with conn:
                    conn.execute(
                        "INSERT INTO paper_account (id, initial_balance, created_ns) "
                        "VALUES (1, ?, ?)",
                        (initial_balance, now_ns()),
                    )
                balance = initial_balance
            else:
                balance = float(row[0])
            broker = cls(writer, Ledger(balance, costs))
            broker._load(conn)
        except sqlite3.DatabaseError as exc:
            if is_damaged(exc):
                raise damaged(db_path, exc) from None
            raise
        finally:
            conn.close()
        return broker

    def _load(self, conn: sqlite3.Connection) -> None:
        """Rebuild the book; an order is pending exactly when it has no fill.

        The fills decide, not ``paper_orders.status``: the status row is written after
        the fill and a crash can keep one without the other. The database allows one
        fill per client id (schema version 3), so an order with a fill is never queued
        again and can never be filled twice.
        """
        for fid, cid, sym, units, price, commission, ts in conn.execute(
            "SELECT fill_id, client_id, symbol, units, price, commission, ts "
            "FROM paper_fills ORDER BY rowid"
        ):
            fill = Fill(fid, cid, sym, int(units), float(price), float(commission), int(ts))
            self.ledger.apply(fill)
            self._fills_by_order.setdefault(cid, []).append(fill)
            self._clock[sym] = max(self._clock.get(sym, fill.ts), fill.ts)
        for cid, sym, units, bar_ts, submitted, protection in conn.execute(
            "SELECT client_id, symbol, units, bar_ts, submitted_ns, protection "
            "FROM paper_orders ORDER BY rowid"
        ):
            order = Order(
                cid, sym, int(units), int(bar_ts), int(submitted), "", _protection(protection)
            )
            self._known[cid] = order
            if cid not in self._fills_by_order:
                self.ledger.submit(order)
        for sym, cid, side, stop, tp, trail in conn.execute(
            "SELECT symbol, client_id, side, stop, take_profit, trail FROM paper_protection"
        ):
            if self.ledger.units(sym) * int(side) > 0:  # levels of a position still open
                self.ledger.protective[sym] = Protective(cid, int(side), stop, tp, trail)
        for sym, close, ts in conn.execute(
            "SELECT c.symbol, c.close, c.ts FROM candles c JOIN (SELECT symbol, MAX(ts) AS ts "
            "FROM candles GROUP BY symbol) m ON c.symbol = m.symbol AND c.ts = m.ts"
        ):
            self.ledger.last_price[sym] = float(close)
            self._clock[sym] = max(self._clock.get(sym, int(ts)), int(ts))

    async def submit(self, order: Order) -> list[Fill]:
        """Accept a market order; it fills at the next bar's open of its symbol."""
        if order.client_id in self._known:
            # Idempotent: the same client id is never booked twice. It should never be
            # sent twice either, so record it where the crash tests look.
            await self._writer.execute(
                SQL_EVENT, (now_ns(), "duplicate_submit", order.symbol, order.client_id)
            )
            return []
        # Not awaited: the order row the actor wrote *before* calling us is the durable
        # record; this one rides the same FIFO writer, so it can never be on disk without
        # it, and if it is lost in a crash, reconciliation sees "never reached the broker".
        self._writer.submit(
            "INSERT INTO paper_orders (client_id, symbol, units, bar_ts, status, submitted_ns,"
            " protection) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                order.client_id,
                order.symbol,
                order.units,
                order.bar_ts,
                OrderStatus.SUBMITTED.value,
                now_ns(),
                _protection_json(order.protection),
            ),
        )
        self._known[order.client_id] = order
        self.ledger.submit(order)
        return []

    async def on_bar(self, bar: Bar) -> list[Fill]:
        """Fill pending orders of ``bar.symbol`` and persist the fills before returning.

        A bar no newer than one already seen for the symbol (a replay restarted behind
        the book) is not the market: it fills nothing, and pending orders wait for the
        first bar past the newest one, as at a real broker whose clock only moves forward.
        """
        if bar.ts <= self._clock.get(bar.symbol, bar.ts - 1):
            return []
        self._clock[bar.symbol] = bar.ts
        before = self._levels(bar.symbol)
        fills = self.ledger.on_bar(bar)
        if fills:
            for fill in fills:
                self._fills_by_order.setdefault(fill.client_id, []).append(fill)
                self._writer.submit(
                    "INSERT INTO paper_fills (fill_id, client_id, symbol, units, price, "
                    "commission, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        fill.fill_id,
                        fill.client_id,
                        fill.symbol,
                        fill.units,
                        fill.price,
                        fill.commission,
                        fill.ts,
                    ),
                )
                self._writer.submit(
                    "UPDATE paper_orders SET status = ? WHERE client_id = ?",
                    (OrderStatus.FILLED.value, fill.client_id),
                )
        after = self._levels(bar.symbol)
        if after != before:  # after the fills: levels are never on disk ahead of them
            self._store_levels(bar.symbol, after)
        # No flush: the actor records these fills through the same FIFO writer, so the
        # book and the fills table always reach the disk together or not at all.
        return fills

    def _levels(self, symbol: str) -> tuple[str, int, float, float | None, float | None] | None:
        g = self.ledger.protective.get(symbol)
        return None if g is None else (g.client_id, g.side, g.stop, g.take_profit, g.trail)

    def _store_levels(
        self, symbol: str, levels: tuple[str, int, float, float | None, float | None] | None
    ) -> None:
        """Persist the symbol's protective levels (same FIFO writer as its fills)."""
        if levels is None:
            self._writer.submit("DELETE FROM paper_protection WHERE symbol = ?", (symbol,))
            return
        self._writer.submit(
            "INSERT OR REPLACE INTO paper_protection (symbol, client_id, side, stop, "
            "take_profit, trail) VALUES (?, ?, ?, ?, ?, ?)",
            (symbol, *levels),
        )

    def protection_of(self, symbol: str) -> dict[str, float | str | None] | None:
        """The stop and target protecting ``symbol``'s position, for ``ctl status``."""
        g = self.ledger.protective.get(symbol)
        if g is None:
            return None
        kind = "trailing" if g.trail is not None else "fixed"
        return {"stop": g.stop, "take_profit": g.take_profit, "stop_kind": kind}

    async def lookup_order(self, client_id: str) -> BrokerOrderState | None:
        """What the paper book knows about ``client_id``."""
        if client_id not in self._known:
            return None
        fills = tuple(self._fills_by_order.get(client_id, ()))
        status = OrderStatus.FILLED if fills else OrderStatus.SUBMITTED
        return BrokerOrderState(client_id, status, fills)

    async def positions(self) -> dict[str, int]:
        """Net units per symbol (non-zero only)."""
        return {s: p.units for s, p in self.ledger.positions.items() if p.units}

    async def account(self) -> AccountSnapshot:
        """Balance and equity at the last seen prices."""
        unrealized = self.ledger.unrealized()
        return AccountSnapshot(
            balance=self.ledger.balance,
            equity=self.ledger.balance + unrealized,
            unrealized_pnl=unrealized,
        )


def _protection_json(p: Protection | None) -> str | None:
    if p is None:
        return None
    return json.dumps(
        {"stop": p.stop_distance, "take_profit": p.take_profit_distance, "trailing": p.trailing}
    )


def _protection(text: str | None) -> Protection | None:
    if not text:
        return None
    d = json.loads(text)
    return Protection(float(d["stop"]), d["take_profit"], bool(d["trailing"]))
