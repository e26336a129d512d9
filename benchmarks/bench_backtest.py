"""Backtest benchmarks (issue 4: backtests that run the live code).

Prints JSON with, for the machine it runs on:
- event-driven engine bars/s on a year of EURUSD M1 (371,635 bars) with SMA(10, 20), and
  the ratio to backtesting.py on the same bars with the same rules, measured in this run;
- vectorised engine bars/s on the same bars (whole run, and the engine alone);
- a 100-point (fast x slow) grid over the same year, wall time with 1 and 2 workers;
- peak RSS of a 6-symbol portfolio year of M1 (each engine in its own subprocess,
  ``resource.getrusage`` max RSS), next to the RSS after imports and loading.

The comparison has no spread, slippage or commission, and backtesting.py is made to follow
forexd's rules exactly: two indicator lines, SMA(10) and SMA(20), computed so that they
compare exactly as forexd's integer-point comparison does (ties and rounding cannot
differ; see :func:`sma_lines`), always in the market, long 10,000 when fast > slow, short when
below, orders filled at the next bar's open. backtesting.py's tqdm progress bar is switched
off so it is timed without it. Each engine is timed best of ``--repeat`` runs from an
in-memory frame to a finished result with metrics (backtesting.py: ``Backtest(...).run()``).

Usage: python benchmarks/bench_backtest.py [--repeat N] [--quick] [--single-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import HISTDATA_SYMBOLS, histdata_file, machine
from forexd.backtest import BacktestRequest, run_backtest, run_grid
from forexd.backtest.runner import prepare_data
from forexd.backtest.vectorised import run_vectorised
from forexd.brokers.ledger import CostModel
from forexd.domain import get_instrument
from forexd.feeds.loaders import load_candles
from forexd.strategies import build_strategy
from forexd.strategies.base import VectorisedStrategy

PARAMS = {"fast": 10, "slow": 20, "units": 10_000}
NO_COSTS = CostModel(0.0, 0.0, 0.0)
GRID = {"fast": tuple(range(2, 21, 2)), "slow": tuple(range(30, 121, 10))}  # 10 x 10


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls, and the last call's value."""
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def sma_lines(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """SMA(10) and SMA(20) of the closes, compared exactly as forexd compares them.

    forexd's ``SmaCross`` compares ``sum_fast * slow`` with ``sum_slow * fast`` over integer
    price points, which is the comparison of the two averages without rounding. The two
    lines handed to backtesting.py are those products (floats, exact below 2**53), so both
    libraries see the same crossings, ties included.

    backtesting.py first calls ``next()`` one bar after its indicators stop being ``nan``,
    while forexd decides on the first bar with a full window. So the bar before that one
    holds a tie (0 = 0, no order) instead of ``nan``: both then decide first on bar
    ``slow - 1``.
    """
    fast, slow = PARAMS["fast"], PARAMS["slow"]
    points = np.rint(frame["close"].to_numpy() * get_instrument("EURUSD").price_scale)
    csum = np.concatenate(([0.0], np.cumsum(points)))

    def line(n: int, weight: int) -> np.ndarray:
        out = np.full(len(points), np.nan)
        out[slow - 2] = 0.0
        out[slow - 1 :] = (csum[slow:] - csum[slow - n : len(csum) - n]) * weight
        return out

    return line(fast, slow), line(slow, fast)


def backtesting_py(frame: pd.DataFrame, repeat: int) -> dict[str, Any]:
    """backtesting.py on the same bars and rules (see the module note)."""
    try:
        import backtesting.backtesting as bt_module
        from backtesting import Backtest, Strategy
    except ImportError:
        return {"skipped": "backtesting.py is not installed (pip install backtesting)"}
    bt_module._tqdm = lambda seq, **_: seq  # type: ignore[attr-defined]  # no progress bar
    fast_line, slow_line = sma_lines(frame)
    df = pd.DataFrame(
        {
            "Open": frame["open"].to_numpy(),
            "High": frame["high"].to_numpy(),
            "Low": frame["low"].to_numpy(),
            "Close": frame["close"].to_numpy(),
            "Volume": frame["volume"].to_numpy(),
        },
        index=pd.to_datetime(frame["ts"].to_numpy()),
    )
    units = PARAMS["units"]

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(lambda: fast_line, name="sma_fast")
            self.slow = self.I(lambda: slow_line, name="sma_slow")

        def next(self) -> None:
            f, s = self.fast[-1], self.slow[-1]
            if f > s and not self.position.is_long:
                self.buy(size=units)
            elif f < s and not self.position.is_short:
                self.sell(size=units)

    def run() -> Any:
        warnings.filterwarnings("ignore", message="Some trades remain open")
        bt = Backtest(
            df,
            SmaCross,
            cash=100_000,
            spread=0.0,
            commission=0.0,
            exclusive_orders=True,  # a new order closes the position first: a flip
            finalize_trades=False,
        )
        return bt.run()

    seconds, stats = best_of(repeat, run)
    return {
        "seconds": round(seconds, 3),
        "bars_per_s": round(len(df) / seconds),
        "trades": int(stats["# Trades"]),
        "final_equity": round(float(stats["Equity Final [$]"]), 2),
    }


def numpy_floor(frame: pd.DataFrame) -> float:
    """Final equity of a plain numpy SMA(10, 20) crossover: the floor for the vectorised engine.

    Same rules (integer-point comparison, always in the market, fills at the next open, no
    costs), nothing else: no trade list, no metrics, no account path beyond the equity.
    """
    fast, slow, units = PARAMS["fast"], PARAMS["slow"], PARAMS["units"]
    open_ = frame["open"].to_numpy()
    points = np.rint(frame["close"].to_numpy() * get_instrument("EURUSD").price_scale)
    csum = np.concatenate(([0.0], np.cumsum(points)))
    end = np.arange(slow, len(points) + 1)
    lhs = (csum[end] - csum[end - fast]) * slow
    rhs = (csum[end] - csum[end - slow]) * fast
    signal = np.full(len(points), np.nan)
    signal[slow - 1 :] = np.where(lhs > rhs, units, np.where(lhs < rhs, -units, np.nan))
    held = pd.Series(signal).ffill().fillna(0.0).to_numpy()
    pos = np.concatenate(([0.0], held[:-1]))  # pos[i]: held from bar i's open
    pnl = pos[:-1] * np.diff(open_)
    last = pos[-1] * (frame["close"].to_numpy()[-1] - open_[-1])  # marked at the last close
    return float(100_000 + pnl.sum() + last)


def single_symbol(repeat: int, quick: bool) -> dict[str, Any]:
    """Event vs backtesting.py vs vectorised on a year of EURUSD M1."""
    frame = load_candles(histdata_file("EURUSD"), "histdata")
    if quick:
        frame = frame.iloc[:60_000].reset_index(drop=True)
    bars = len(frame)
    frames = {"EURUSD": frame}
    request = BacktestRequest(params=PARAMS, costs=NO_COSTS)
    vec_request = BacktestRequest(params=PARAMS, costs=NO_COSTS, engine="vectorised")
    event_s, event = best_of(repeat, lambda: run_backtest(request, frames=frames))
    bt = backtesting_py(frame, repeat)
    vec_s, vec = best_of(max(repeat, 10), lambda: run_backtest(vec_request, frames=frames))
    data = prepare_data(vec_request, frames)
    strategy = build_strategy("sma_cross", PARAMS)
    assert isinstance(strategy, VectorisedStrategy)
    engine_s, _ = best_of(
        max(repeat, 10), lambda: run_vectorised(data, [strategy], NO_COSTS, 100_000.0)
    )
    floor_s, _ = best_of(max(repeat, 10), lambda: numpy_floor(frame))
    out: dict[str, Any] = {
        "bars": bars,
        "event": {
            "seconds": round(event_s, 3),
            "bars_per_s": round(bars / event_s),
            "trades": len(event.trades),
            "final_equity": round(event.metrics.final_equity, 2),
        },
        "backtesting_py": bt,
        "vectorised": {
            "seconds": round(vec_s, 4),
            "bars_per_s": round(bars / vec_s),
            "engine_only_bars_per_s": round(bars / engine_s),
            "identical_final_equity": vec.metrics.final_equity == event.metrics.final_equity,
            "plain_numpy_floor_s": round(floor_s, 4),
            "whole_run_vs_floor": round(vec_s / floor_s, 2),
        },
    }
    if "seconds" in bt:
        out["event_speedup_vs_backtesting_py"] = round(bt["seconds"] / event_s, 2)
    return out


def grid(quick: bool) -> dict[str, Any]:
    """A 100-point sweep over the year, with 1 and 2 workers."""
    frame = load_candles(histdata_file("EURUSD"), "histdata")
    if quick:
        frame = frame.iloc[:60_000].reset_index(drop=True)
    request = BacktestRequest(params={"units": 10_000}, grid=GRID, costs=CostModel(0.8))
    out: dict[str, Any] = {"points": 100, "bars": len(frame)}
    for workers in (1, 2):
        t0 = time.perf_counter()
        result = run_grid(request, frames={"EURUSD": frame}, workers=workers, detail_best=False)
        wall = time.perf_counter() - t0
        out[f"workers_{workers}"] = {
            "wall_s": round(wall, 3),
            "sweep_s": round(result.elapsed_s, 3),
            "points_per_s": round(len(result.rows) / result.elapsed_s, 1),
            "best": result.rows[0].params,
        }
    return out


def rss_child(engine: str) -> None:
    """Subprocess body: load six symbols, run one portfolio backtest, print max RSS."""
    frames = {s: load_candles(histdata_file(s), "histdata") for s in HISTDATA_SYMBOLS}
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    request = BacktestRequest(params=PARAMS, costs=CostModel(0.8), engine=engine)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    result = run_backtest(request, frames=frames)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "bars": len(result.data),
                "seconds": round(seconds, 2),
                "rss_after_load_mib": round(loaded_kib / 1024, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
            }
        )
    )


def rss(engine: str) -> dict[str, Any]:
    """Run :func:`rss_child` in a fresh interpreter and read its report."""
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", engine],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Run every benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per engine")
    parser.add_argument("--quick", action="store_true", help="60k bars instead of a year")
    parser.add_argument("--rss-child", choices=("event", "vectorised"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--single-only", action="store_true", help="only the one-symbol engine comparison"
    )
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average_at_start": list(os.getloadavg()),
        "sma_10_20_eurusd_m1_2017": single_symbol(args.repeat, args.quick),
    }
    if not args.single_only:
        report["grid_100_points"] = grid(args.quick)
        report["six_symbols_m1_2017_peak_rss"] = {e: rss(e) for e in ("event", "vectorised")}
    report["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
