"""Candles in the store: writing a checked frame, reading one symbol's series back.

A candle frame is a pandas DataFrame with columns ``ts`` (int64 epoch ns UTC, bar open),
``open``, ``high``, ``low``, ``close``, ``volume`` — strictly increasing ``ts``. Reading
and checking candle *files* is the feeds' job (:mod:`forexd.feeds.candle_import` joins
the two); this module only speaks SQL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forexd.errors import DataError
from forexd.storage.db import open_sync

CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")

SQL_IMPORT = (
    "INSERT OR IGNORE INTO candles (symbol, timeframe, ts, open, high, low, close, volume) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_candles(db_path: Path, frame: pd.DataFrame, symbol: str, timeframe: str) -> int:
    """Insert a checked candle frame in one transaction; returns how many rows were new.

    Existing candles are never overwritten (``INSERT OR IGNORE``), so writing the same
    frame again is idempotent.

    Raises:
        StorageError: the store cannot be opened.
    """
    rows = zip(
        [symbol] * len(frame),
        [timeframe] * len(frame),
        frame["ts"].astype("int64").tolist(),
        frame["open"].tolist(),
        frame["high"].tolist(),
        frame["low"].tolist(),
        frame["close"].tolist(),
        frame["volume"].tolist(),
        strict=True,
    )
    conn = open_sync(db_path)
    try:
        with conn:
            before = conn.total_changes
            conn.executemany(SQL_IMPORT, rows)
            inserted: int = conn.total_changes - before
    finally:
        conn.close()
    return inserted


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
        # Name what *is* stored: a file of M1 bars must be imported as M1 (`data import`
        # refuses it as H1), so "import it as H1" would be the wrong advice.
        has = f" (it has {', '.join(sorted(stored))})" if stored else ""
        use = f"backtest what is stored with --timeframe {sorted(stored)[0]}, or " if stored else ""
        raise DataError(
            f"the store {db_path} has no {timeframe} candles for {symbol}{has}; {use}import a "
            f"file of {timeframe} bars: forexd data import FILE --symbol {symbol} --timeframe "
            f"{timeframe} (finer bars: --data FILE --timeframe {timeframe} resamples them)"
        )
    frame: pd.DataFrame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
    frame["ts"] = frame["ts"].astype(np.int64)
    return frame
