"""Candle frames: reading them from the store and clipping them to a date range.

A candle frame is a pandas DataFrame with columns ``ts`` (int64 epoch ns UTC, bar open),
``open``, ``high``, ``low``, ``close``, ``volume`` — strictly increasing ``ts``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forexd.domain import iso_to_ns
from forexd.errors import ConfigError, DataError
from forexd.storage.db import open_sync

COLUMNS = ["ts", "open", "high", "low", "close", "volume"]


def read_store(db_path: Path, symbol: str, timeframe: str) -> pd.DataFrame:
    """All stored candles of one symbol and timeframe, oldest first.

    Raises:
        DataError: the store has none (say how to import some).
    """
    if not db_path.exists():
        raise DataError(
            f"no store at {db_path}; import candles first: forexd data import FILE "
            f"--symbol {symbol} --timeframe {timeframe}"
        )
    conn = open_sync(db_path, readonly=True)
    try:
        rows = conn.execute(
            "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ? "
            "AND timeframe = ? ORDER BY ts",
            (symbol, timeframe),
        ).fetchall()
        stored = (
            []
            if rows
            else [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT timeframe FROM candles WHERE symbol = ?", (symbol,)
                )
            ]
        )
    finally:
        conn.close()
    if not rows:
        # (cli helper) Name what *is* stored: a file of M1 bars must be imported as M1
        # (`data import` refuses it as H1), so "import it as H1" would be the wrong advice.
        has = f" (it has {', '.join(sorted(stored))})" if stored else ""
        use = f"backtest what is stored with --timeframe {sorted(stored)[0]}, or " if stored else ""
        raise DataError(
            f"the store {db_path} has no {timeframe} candles for {symbol}{has}; {use}import a "
            f"file of {timeframe} bars: forexd data import FILE --symbol {symbol} --timeframe "
            f"{timeframe} (finer bars: --data FILE --timeframe {timeframe} resamples them)"
        )
    frame: pd.DataFrame = pd.DataFrame(rows, columns=COLUMNS)
    frame["ts"] = frame["ts"].astype(np.int64)
    return frame


def clip_frame(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    """Keep bars with ``start <= ts < end`` (ISO dates/times, UTC if naive).

    Raises:
        ConfigError: a bound is not an ISO 8601 date/time.
    """
    if start is None and end is None:
        return frame
    ts = frame["ts"].to_numpy(dtype=np.int64)
    mask = np.ones(len(ts), dtype=bool)
    for name, value, keep_after in (("start", start, True), ("end", end, False)):
        if value is None:
            continue
        try:
            bound = iso_to_ns(value)
        except ValueError:
            raise ConfigError(
                f"feed.{name} = {value!r} is not an ISO 8601 date/time (e.g. 2018-03-01)"
            ) from None
        mask &= ts >= bound if keep_after else ts < bound
    clipped: pd.DataFrame = frame.loc[mask].reset_index(drop=True)
    return clipped
