"""The account over time, rebuilt from the fills: equity per bar, exposure, financing.

Both engines end with the same inputs: the bars and a :class:`FillTable` whose
``balance_after`` is the ledger's balance after each fill. The equity of every bar is then
what ``Ledger.equity`` would have returned after that bar's ``on_bar`` (balance plus each
open position marked to its symbol's last close, summed in the ledger's position order),
plus the financing booked so far. Computing it here instead of calling ``Ledger.equity``
per bar keeps the event-driven loop to what the live actor does, and gives the two engines
one definition of equity; ``tests/test_backtest_engine.py`` checks it against the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from forexd.backtest.data import MarketData
from forexd.backtest.positions import PositionPath, to_account
from forexd.backtest.rollover import financing
from forexd.backtest.trades import FillTable
from forexd.domain.bars import FloatArray, IntArray

BoolArray = np.ndarray


@dataclass(frozen=True, slots=True)
class AccountPath:
    """The account after each merged bar.

    Attributes:
        equity: balance + open P&L + financing so far, USD.
        exposed: whether any position was held during the bar (after its open fills).
        financing: cumulative financing booked so far, USD (positive = earned).
    """

    equity: FloatArray
    exposed: BoolArray
    financing: FloatArray

    @property
    def final_equity(self) -> float:
        """Equity after the last bar."""
        return float(self.equity[-1]) if len(self.equity) else 0.0


def last_event(n: int, at: IntArray) -> IntArray:
    """For each of ``n`` slots, the index of the last event at or before it (-1: none).

    ``at`` must be sorted; of several events in one slot the last one counts.
    """
    marks = np.full(n, -1, np.int64)
    if len(at):
        keep = np.ones(len(at), bool)
        keep[:-1] = at[1:] != at[:-1]
        marks[at[keep]] = np.flatnonzero(keep)
    out: IntArray = np.maximum.accumulate(marks)
    return out


def take(values: np.ndarray, index: IntArray, default: float | int) -> np.ndarray:
    """``values[index]`` where ``index >= 0``, else ``default``."""
    if len(values) == 0:
        return np.full(len(index), default, dtype=values.dtype)
    # One gather from the values with the default in front (index -1 -> slot 0): a third
    # of the passes of where(index >= 0, values[maximum(index, 0)], default).
    padded = np.empty(len(values) + 1, dtype=np.result_type(values, np.asarray(default)))
    padded[0] = default
    padded[1:] = values
    return padded[index + 1]


def build_account(
    data: MarketData,
    fills: FillTable,
    paths: list[tuple[IntArray, PositionPath]],
    initial_balance: float,
    rollover: Mapping[str, float],
) -> AccountPath:
    """Equity, exposure and financing per merged bar (see the module note).

    Args:
        data: the bars.
        fills: every fill, in booking order.
        paths: per symbol code, its fill indexes and replayed positions.
        initial_balance: USD.
        rollover: symbol to annual differential in percent (missing: none).
    """
    n = len(data)
    single = len(data.series) == 1
    after_fill = last_event(n, fills.bar)
    balance = take(fills.balance_after, after_fill, initial_balance)
    unrealized = np.zeros(n)
    exposed = np.zeros(n, bool)
    booked = np.zeros(n)
    # Ledger.unrealized sums positions in the order they were first filled; keep it, so
    # that the sums are the ledger's to the last bit.
    firsts = sorted((int(idx[0]), code) for code, (idx, _) in enumerate(paths) if len(idx))
    for _, code in firsts:
        idx, path = paths[code]
        series = data.series[code]
        # With one symbol merged and local bars coincide: reuse the balance's index.
        local_fills = data.local[fills.bar[idx]]
        after_bar = after_fill if single else last_event(len(series), local_fills)
        units = take(path.units_after, after_bar, 0)
        avg = take(path.avg_after, after_bar, 0.0)
        pnl = to_account(series.instrument, (series.close - avg) * units, series.close)
        pnl = np.where(units != 0, pnl, 0.0)
        rate = rollover.get(series.symbol, 0.0)
        charges = financing(series, units, rate) if rate else None
        if single:
            unrealized = unrealized + pnl
            exposed |= units != 0
            if charges is not None:
                booked += charges
            continue
        where = np.flatnonzero(data.code == code)
        latest = last_event(n, where)
        unrealized = unrealized + take(pnl, latest, 0.0)
        exposed |= take(units, latest, 0) != 0
        if charges is not None:
            booked[where] += charges
    fin = np.cumsum(booked)
    return AccountPath(balance + unrealized + fin, exposed, fin)
