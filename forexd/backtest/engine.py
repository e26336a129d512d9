"""The event-driven backtest: the live decision and execution code on a simulated clock.

Per bar it does exactly what ``SymbolActor.on_bar`` does with the paper broker, minus the
I/O: ``Ledger.on_bar(bar)`` fills the symbol's pending order at this bar's open, each fill
goes to ``SymbolCore.on_fill``, then ``SymbolCore.on_bar(bar)`` decides on the close and its
order goes to ``Ledger.submit`` to fill at the symbol's next bar. Several symbols share one
``Ledger`` (one account) and walk one timeline merged by bar time (ties: by symbol name).
The clock is the bar time itself; there is no event loop and nothing waits.

Speed: the per-bar cost is the live core's own (history append, strategy decision) plus
one ``Bar`` and two calls. The bars are made from plain Python lists converted per chunk
(``ndarray.tolist`` is far cheaper than indexing numpy scalars), the chunk bounds memory
for multi-year multi-symbol runs, and the garbage collector is paused during the loop: the
loop makes no reference cycles, and generation scans of the many short-lived ``Bar`` and
``Fill`` objects would otherwise cost about a tenth of the run. Equity is not sampled in
the loop; :mod:`forexd.backtest.account` rebuilds it per bar from the fills afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from forexd.actors.core import OrderGate, SymbolCore
from forexd.backtest.data import MarketData
from forexd.backtest.retrain import BacktestTrainer, backtest_trainer
from forexd.backtest.trades import REASON_CODE, FillTable
from forexd.brokers.ledger import CostModel, Ledger
from forexd.domain import Bar
from forexd.domain.timeframes import TIMEFRAME_SECONDS
from forexd.strategies.base import Strategy

CHUNK_BARS = 65_536  # bars converted to Python objects at a time (~30 MB for 6 columns)

FillRow = tuple[int, int, int, int, float, float, float, int]
"""Merged bar index, symbol code, time, units, price, commission, balance after, reason code."""


@dataclass(frozen=True, slots=True)
class EventRun:
    """What the event-driven loop leaves behind."""

    fills: FillTable
    ledger: Ledger
    cores: tuple[SymbolCore, ...]


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_event_driven(
    data: MarketData,
    strategies: Sequence[Strategy],
    costs: CostModel,
    initial_balance: float,
    gate: OrderGate | None = None,
    n_jobs: int = 1,
) -> EventRun:
    """Drive one ``SymbolCore`` per symbol and one shared ``Ledger`` through the bars.

    Args:
        data: the merged bars.
        strategies: one strategy instance per symbol, in ``data.series`` order.
        costs: the simulated broker's costs.
        initial_balance: account start, USD.
        gate: optional risk gate, shared by all symbols as in the daemon.
        n_jobs: threads for strategies that retrain (``ml``), from the compute budget.
    """
    if len(strategies) != len(data.series):
        raise ValueError("one strategy per symbol is needed")
    ledger = Ledger(initial_balance, costs)
    pairs = zip(data.series, strategies, strict=True)
    cores = tuple(SymbolCore(s.instrument, strat, gate) for s, strat in pairs)
    rows: list[FillRow] = []
    trainers = tuple(
        backtest_trainer(strat, s.symbol) for s, strat in zip(data.series, strategies, strict=True)
    )
    with _gc_paused():
        if len(cores) == 1 and trainers[0] is None:
            _drive_one(data, cores[0], ledger, rows)
        else:
            _drive_many(data, cores, ledger, rows, trainers, n_jobs)
    return EventRun(_fill_table(rows), ledger, cores)


def _drive_one(
    data: MarketData,
    core: SymbolCore,
    ledger: Ledger,
    rows: list[FillRow],
) -> None:
    s = data.series[0]
    symbol = s.symbol
    on_bar, submit, decide, on_fill = ledger.on_bar, ledger.submit, core.on_bar, core.on_fill
    for start in range(0, len(s), CHUNK_BARS):
        part = slice(start, start + CHUNK_BARS)
        cols = (
            s.ts[part].tolist(),
            s.open[part].tolist(),
            s.high[part].tolist(),
            s.low[part].tolist(),
            s.close[part].tolist(),
            s.volume[part].tolist(),
        )
        for i, t, o, h, lo, c, v in zip(range(start, start + len(cols[0])), *cols, strict=True):
            bar = Bar(symbol, t, o, h, lo, c, v)
            fills = on_bar(bar)
            if fills:
                for f, after in zip(fills, ledger.fill_balances, strict=True):
                    on_fill(f)
                    why = REASON_CODE[f.reason]
                    rows.append((i, 0, f.ts, f.units, f.price, f.commission, after, why))
            order = decide(bar)
            if order is not None:
                submit(order)


def _drive_many(
    data: MarketData,
    cores: tuple[SymbolCore, ...],
    ledger: Ledger,
    rows: list[FillRow],
    trainers: tuple[BacktestTrainer | None, ...] = (),
    n_jobs: int = 1,
) -> None:
    symbols = data.symbols
    offsets = np.cumsum([0] + [len(s) for s in data.series[:-1]])
    columns = [
        np.concatenate([getattr(s, name) for s in data.series])
        for name in ("open", "high", "low", "close", "volume")
    ]
    on_bar, submit = ledger.on_bar, ledger.submit
    for start in range(0, len(data), CHUNK_BARS):
        part = slice(start, start + CHUNK_BARS)
        code = data.code[part]
        row = offsets[code] + data.local[part]
        cols = (code.tolist(), data.ts[part].tolist(), *(col[row].tolist() for col in columns))
        for i, k, t, o, h, lo, c, v in zip(range(start, start + len(code)), *cols, strict=True):
            core = cores[k]
            bar = Bar(symbols[k], t, o, h, lo, c, v)
            fills = on_bar(bar)
            if fills:
                for f, after in zip(fills, ledger.fill_balances, strict=True):
                    core.on_fill(f)
                    why = REASON_CODE[f.reason]
                    rows.append((i, k, f.ts, f.units, f.price, f.commission, after, why))
            order = core.on_bar(bar)
            if order is not None:
                submit(order)
            trainer = trainers[k] if trainers else None
            if trainer is not None and trainer.wants_training(core.bars_seen):
                _train(trainer, data, k, int(data.local[i]), n_jobs)


def _train(trainer: BacktestTrainer, data: MarketData, k: int, local: int, n_jobs: int) -> None:
    """Retrain on symbol ``k``'s bars up to and including its ``local``-th bar."""
    from forexd.models.trainconfig import Candles

    s = data.series[k]
    end = local + 1
    candles = Candles(s.ts[:end], s.open[:end], s.high[:end], s.low[:end], s.close[:end])
    seconds = TIMEFRAME_SECONDS.get(data.timeframe or "", 3600)
    trainer.train(candles, timeframe_seconds=seconds, n_jobs=n_jobs)


def _fill_table(rows: list[FillRow]) -> FillTable:
    if not rows:
        i, f = np.zeros(0, np.int64), np.zeros(0)
        return FillTable(i, i, i, i, f, f, f, i)
    bar, code, ts, units, price, fee, balance, reason = zip(*rows, strict=True)
    return FillTable(
        np.array(bar, np.int64),
        np.array(code, np.int64),
        np.array(ts, np.int64),
        np.array(units, np.int64),
        np.array(price, np.float64),
        np.array(fee, np.float64),
        np.array(balance, np.float64),
        np.array(reason, np.int64),
    )
