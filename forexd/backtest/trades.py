"""Fills and round-trip trades as columns.

A *trade* is one closing of (part of) a position: entry at the position's average price
and open time, exit at the closing fill. A flip closes the old position (one trade) and
opens the new one at the fill price; a partial close is a trade for the units it closed.
Its commission is the closed units' share of the entry commission plus their share of the
exit fill's commission, so the net P&L of all trades plus the open positions' entry fees is
the ledger's realised P&L minus commission paid. A position still open at the end of the
data is not a trade; it is reported under ``open_positions`` with its P&L at the last close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forexd.backtest.data import MarketData
from forexd.backtest.positions import PositionPath, replay_positions
from forexd.domain import EXIT_STOP_LOSS, EXIT_TAKE_PROFIT, EXIT_TRAILING_STOP, ns_to_iso
from forexd.domain.bars import FloatArray, IntArray

EXIT_REASONS = ("signal", EXIT_STOP_LOSS, EXIT_TAKE_PROFIT, EXIT_TRAILING_STOP)
"""How a fill came about: by an order (``signal``) or by a protective exit."""
REASON_CODE = {"": 0, **{name: i for i, name in enumerate(EXIT_REASONS) if i}}


@dataclass(frozen=True, slots=True)
class FillTable:
    """Every fill of a run, in the order the ledger booked them.

    Attributes:
        bar: index of the merged bar at whose open the fill happened.
        code: symbol index (``MarketData.series``).
        ts: fill time (the bar's open time).
        units: signed units.
        price: fill price, costs included.
        commission: USD.
        balance_after: the ledger's balance after the fill (before financing).
        reason: :data:`EXIT_REASONS` index of each fill (0: an order's fill; else the
            protective exit that made it); ``None`` when the run had no protection.
    """

    bar: IntArray
    code: IntArray
    ts: IntArray
    units: IntArray
    price: FloatArray
    commission: FloatArray
    balance_after: FloatArray
    reason: IntArray | None = None

    def __len__(self) -> int:
        return len(self.bar)

    def of_symbol(self, code: int) -> np.ndarray:
        """Indexes of one symbol's fills."""
        return np.flatnonzero(self.code == code)


@dataclass(frozen=True, slots=True)
class TradeTable:
    """Closed round trips, ordered by exit time then symbol."""

    code: IntArray
    side: IntArray  # +1 long, -1 short
    units: IntArray
    entry_ts: IntArray
    exit_ts: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    gross_pnl: FloatArray  # USD, before commission
    commission: FloatArray  # USD
    net_pnl: FloatArray  # USD
    exit_reason: IntArray  # EXIT_REASONS index of the closing fill

    def __len__(self) -> int:
        return len(self.code)

    @classmethod
    def empty(cls) -> TradeTable:
        """No trades."""
        i, f = np.zeros(0, np.int64), np.zeros(0)
        return cls(i, i, i, i, i, f, f, f, f, f, i)

    def records(self, symbols: tuple[str, ...]) -> list[dict[str, Any]]:
        """The trades as JSON-ready dicts."""
        cols = (
            self.code.tolist(),
            self.side.tolist(),
            self.units.tolist(),
            self.entry_ts.tolist(),
            self.exit_ts.tolist(),
            self.entry_price.tolist(),
            self.exit_price.tolist(),
            self.gross_pnl.tolist(),
            self.commission.tolist(),
            self.net_pnl.tolist(),
            self.exit_reason.tolist(),
        )
        return [
            {
                "symbol": symbols[code],
                "side": "long" if side > 0 else "short",
                "units": units,
                "entry_time": ns_to_iso(t0),
                "exit_time": ns_to_iso(t1),
                "entry_price": p0,
                "exit_price": p1,
                "gross_pnl": round(gross, 6),
                "commission": round(fee, 6),
                "pnl": round(net, 6),
                "exit": EXIT_REASONS[why],
            }
            for code, side, units, t0, t1, p0, p1, gross, fee, net, why in zip(*cols, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A position still held after the last bar."""

    symbol: str
    units: int
    avg_price: float
    entry_ts: int
    last_price: float
    unrealized_pnl: float  # USD at the last close

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "symbol": self.symbol,
            "side": "long" if self.units > 0 else "short",
            "units": abs(self.units),
            "avg_price": self.avg_price,
            "entry_time": ns_to_iso(self.entry_ts),
            "last_price": self.last_price,
            "unrealized_pnl": round(self.unrealized_pnl, 6),
        }


def replay_all(data: MarketData, fills: FillTable) -> list[tuple[np.ndarray, PositionPath]]:
    """Per symbol (in code order): its fill indexes and the replayed positions."""
    out = []
    for code, series in enumerate(data.series):
        idx = fills.of_symbol(code)
        path = replay_positions(
            series.instrument,
            fills.ts[idx],
            fills.units[idx],
            fills.price[idx],
            fills.commission[idx],
        )
        out.append((idx, path))
    return out


def build_trades(
    data: MarketData, fills: FillTable, paths: list[tuple[np.ndarray, PositionPath]]
) -> tuple[TradeTable, list[OpenPosition]]:
    """Round trips and open positions from the replayed fills (see the module note)."""
    parts: list[tuple[np.ndarray, ...]] = []
    still_open: list[OpenPosition] = []
    for code, (idx, path) in enumerate(paths):
        series = data.series[code]
        if len(idx) and path.units_after[-1] != 0:
            units = int(path.units_after[-1])
            avg = float(path.avg_after[-1])
            last = float(series.close[-1])
            still_open.append(
                OpenPosition(
                    series.symbol,
                    units,
                    avg,
                    _open_since(path, fills.ts[idx]),
                    last,
                    series.instrument.to_account((last - avg) * units, last),
                )
            )
        closes = np.flatnonzero(path.closing > 0)
        if len(closes) == 0:
            continue
        fill_units = np.abs(fills.units[idx][closes])
        closed = path.closing[closes]
        fee = path.entry_fee_before[closes] * closed + (
            fills.commission[idx][closes] * closed / fill_units
        )
        gross = path.realized[closes]
        parts.append(
            (
                np.full(len(closes), code, np.int64),
                np.where(path.units_before[closes] > 0, 1, -1),
                closed,
                path.entry_ts_before[closes],
                fills.ts[idx][closes],
                path.avg_before[closes],
                fills.price[idx][closes],
                gross,
                fee,
                gross - fee,
                np.zeros(len(closes), np.int64)
                if fills.reason is None
                else fills.reason[idx][closes],
            )
        )
    if not parts:
        return TradeTable.empty(), still_open
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.lexsort((cols[0], cols[4]))  # exit time, then symbol
    return TradeTable(*(c[order] for c in cols)), still_open


def _open_since(path: PositionPath, ts: IntArray) -> int:
    """Open time of the position left after the last fill."""
    last = len(ts) - 1
    before, after = int(path.units_before[last]), int(path.units_after[last])
    if before == 0 or (before > 0) != (after > 0):
        return int(ts[last])  # the last fill opened (or flipped into) it
    return int(path.entry_ts_before[last])
