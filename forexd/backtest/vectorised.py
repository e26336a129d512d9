"""The vectorised backtest: the event-driven engine's fills, computed with numpy.

For a :class:`~forexd.strategies.base.VectorisedStrategy` the whole run follows from
``targets()``: the target after each close (``NO_CHANGE`` keeps the previous one) is the
position wanted, so the position during bar ``i`` is the last target set before bar ``i``,
and every change of it is a market order filled at bar ``i``'s open — what ``SymbolCore``
(``target - held``) and ``Ledger`` (next open) do one bar at a time. The fill price and the
commission are ``CostModel.fill_price`` and ``CostModel.commission``, operation for
operation, including Python's correctly rounded ``round()`` (see :func:`fill_prices`);
positions and realised P&L are ``Position.apply`` replayed (:mod:`positions`); balances are
the ledger's running sums, which ``numpy.cumsum`` adds in the same order. The results are
therefore the same numbers, not just close ones; the parity tests compare them on a year of
real data. Protective stops make the path depend on prices, not only on targets; a run with
them walks from event to event through the shared ledger (:mod:`forexd.backtest.stops`) and
gives the same fills too. A risk gate is not supported here: it is stateful and
order-by-order, so a run with one needs the event-driven engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forexd.backtest.data import MarketData, SymbolSeries
from forexd.backtest.positions import PositionPath, replay_positions
from forexd.backtest.stops import protected_fills, protection_params
from forexd.backtest.trades import FillTable
from forexd.brokers.ledger import CostModel
from forexd.domain import ACCOUNT_CURRENCY, Instrument
from forexd.domain.bars import FloatArray, IntArray
from forexd.strategies.base import NO_CHANGE, VectorisedStrategy

HALF_TOLERANCE = 1e-6  # scaled prices this close to a .5 boundary are re-rounded exactly


def fill_prices(
    costs: CostModel, instrument: Instrument, reference: FloatArray, units: IntArray
) -> FloatArray:
    """Vectorised ``CostModel.fill_price``: reference ± half spread + slippage, rounded.

    ``round(x, d)`` in Python rounds the exact binary value of ``x`` to ``d`` decimals;
    ``x * 10**d`` rounded with ``rint`` agrees except when that product lies within its own
    rounding error of a .5 boundary. Those few prices are recomputed with ``round()``
    itself; the division ``k / 10**d`` of two exact numbers gives the same double as the
    decimal result ``round()`` returns.
    """
    adverse = (costs.spread_pips / 2 + costs.slippage_pips) * instrument.pip_size
    raw = np.where(units > 0, reference + adverse, reference - adverse)
    digits = instrument.price_precision + 1
    scale = 10.0**digits
    scaled = raw * scale
    price: FloatArray = np.rint(scaled) / scale
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < HALF_TOLERANCE
    for i in np.flatnonzero(near_half).tolist():
        price[i] = round(float(raw[i]), digits)
    return price


def commissions(
    costs: CostModel, instrument: Instrument, units: IntArray, price: FloatArray
) -> FloatArray:
    """Vectorised ``CostModel.commission`` (USD per fill)."""
    if costs.commission_per_million == 0.0:
        return np.zeros(len(units))
    notional = np.abs(units) if instrument.base == ACCOUNT_CURRENCY else np.abs(units) * price
    fee: FloatArray = notional * costs.commission_per_million / 1e6
    return fee


def held_positions(targets: IntArray) -> IntArray:
    """Position during each bar: the last target set before it (0 before any)."""
    n = len(targets)
    held = np.zeros(n, np.int64)
    if n < 2:
        return held
    slot = np.arange(n)
    slot[targets == NO_CHANGE] = -1
    last = np.maximum.accumulate(slot)  # the last bar that set a target (-1: none yet)
    padded = np.empty(n + 1, np.int64)  # 0 in front for "no target yet" (index -1)
    padded[0] = 0
    padded[1:] = targets
    held[1:] = padded[last[:-1] + 1]
    return held


def symbol_fills(
    series: SymbolSeries, strategy: VectorisedStrategy, costs: CostModel
) -> tuple[IntArray, IntArray, FloatArray, FloatArray, PositionPath, IntArray]:
    """One symbol's fills: local bar, units, price, commission, replayed positions, reasons.

    A strategy with protective stops goes through :func:`forexd.backtest.stops.protected_fills`.
    """
    params = protection_params(strategy)
    if params is not None:
        at, units, price, fee, why = protected_fills(series, strategy, params, costs)
    else:
        held = held_positions(strategy.targets(series.bar_arrays()))
        delta = np.diff(held, prepend=0)
        at = np.flatnonzero(delta)
        units = delta[at]
        price = fill_prices(costs, series.instrument, series.open[at], units)
        fee = commissions(costs, series.instrument, units, price)
        why = np.zeros(len(at), np.int64)
    path = replay_positions(series.instrument, series.ts[at], units, price, fee)
    return at, units, price, fee, path, why


def run_vectorised(
    data: MarketData,
    strategies: Sequence[VectorisedStrategy],
    costs: CostModel,
    initial_balance: float,
) -> tuple[FillTable, list[tuple[IntArray, PositionPath]]]:
    """Every fill of the run and, per symbol, its fill indexes and positions.

    Args:
        data: the merged bars.
        strategies: one per symbol, in ``data.series`` order.
        costs: trading costs.
        initial_balance: account start, USD.
    """
    if len(strategies) != len(data.series):
        raise ValueError("one strategy per symbol is needed")
    per_symbol = [
        symbol_fills(s, strat, costs) for s, strat in zip(data.series, strategies, strict=True)
    ]
    if len(per_symbol) == 1:
        at, units, price, fee, path, why = per_symbol[0]
        bar, code = at, np.zeros(len(at), np.int64)
        realized = path.realized
    else:
        merged_at = [
            np.flatnonzero(data.code == k)[at] for k, (at, *_rest) in enumerate(per_symbol)
        ]
        bar = np.concatenate(merged_at)
        order = np.argsort(bar, kind="stable")
        bar = bar[order]
        code = np.concatenate([np.full(len(m), k, np.int64) for k, m in enumerate(merged_at)])[
            order
        ]
        units = np.concatenate([p[1] for p in per_symbol])[order]
        price = np.concatenate([p[2] for p in per_symbol])[order]
        fee = np.concatenate([p[3] for p in per_symbol])[order]
        realized = np.concatenate([p[4].realized for p in per_symbol])[order]
        why = np.concatenate([p[5] for p in per_symbol])[order]
    # Ledger.balance is initial + realized - commission_paid, both running sums in fill
    # order; cumsum adds in the same order, so the balances are the ledger's exactly.
    balance = initial_balance + np.cumsum(realized) - np.cumsum(fee)
    fills = FillTable(bar, code, data.ts[bar], units, price, fee, balance, why)
    paths = [(np.flatnonzero(code == k), p[4]) for k, p in enumerate(per_symbol)]
    return fills, paths
