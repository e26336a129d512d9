"""The peer of ``forexd backtest`` for whole-process timing: backtesting.py, as a user runs it.

Reads a candle file with pandas (progress bar off, as in ``bench_backtest``), builds the
same SMA(10, 20) always-in-the-market rules as
forexd (the integer-exact lines of ``bench_backtest.sma_lines``, written out here so that
this process imports nothing of forexd), runs ``Backtest(...).run()`` and prints one line.
Timed from outside as a whole process by ``bench_process.py``.

Usage: python benchmarks/peer_backtesting.py FILE histdata|oanda-lean [START END]
"""

from __future__ import annotations

import sys
import warnings

import backtesting.backtesting as bt_module
import numpy as np
import pandas as pd
from backtesting import Backtest, Strategy

bt_module._tqdm = lambda seq, **_: seq  # type: ignore[attr-defined]  # no progress bar

FAST, SLOW, UNITS, SCALE = 10, 20, 10_000, 100_000


def read(path: str, fmt: str) -> pd.DataFrame:
    """The file as backtesting.py's OHLC frame (bid prices, naive times)."""
    if fmt == "histdata":
        raw = pd.read_csv(path, sep=";", header=None, names=["t", "o", "h", "l", "c", "v"])
        index = pd.to_datetime(raw["t"], format="%Y%m%d %H%M%S")
    else:
        raw = pd.read_csv(path, header=None, usecols=range(6), names=["t", "o", "h", "l", "c", "v"])
        index = pd.to_datetime(raw["t"], format="%Y%m%d %H:%M")
    frame = raw[["o", "h", "l", "c", "v"]]
    frame = frame.set_axis(["Open", "High", "Low", "Close", "Volume"], axis=1)
    return frame.set_index(pd.DatetimeIndex(index))


def lines(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sum_fast * slow and sum_slow * fast over integer points (forexd's exact comparison)."""
    points = np.rint(close * SCALE)
    csum = np.concatenate(([0.0], np.cumsum(points)))

    def line(n: int, weight: int) -> np.ndarray:
        out = np.full(len(points), np.nan)
        out[SLOW - 2] = 0.0
        out[SLOW - 1 :] = (csum[SLOW:] - csum[SLOW - n : len(csum) - n]) * weight
        return out

    return line(FAST, SLOW), line(SLOW, FAST)


def main() -> None:
    """Load, run, print the trade count and final equity."""
    path, fmt, *span = sys.argv[1:]
    df = read(path, fmt)
    if span:
        df = df.loc[span[0] : span[1]]
    fast_line, slow_line = lines(df["Close"].to_numpy())

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(lambda: fast_line, name="fast")
            self.slow = self.I(lambda: slow_line, name="slow")

        def next(self) -> None:
            f, s = self.fast[-1], self.slow[-1]
            if f > s and not self.position.is_long:
                self.buy(size=UNITS)
            elif f < s and not self.position.is_short:
                self.sell(size=UNITS)

    warnings.filterwarnings("ignore")
    bt = Backtest(df, SmaCross, cash=100_000, spread=0.0, commission=0.0,
                  exclusive_orders=True, finalize_trades=False)  # fmt: skip
    stats = bt.run()
    print(int(stats["# Trades"]), round(float(stats["Equity Final [$]"]), 2))


if __name__ == "__main__":
    main()
