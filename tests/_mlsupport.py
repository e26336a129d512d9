"""Helpers for the ML tests: bundled candles, a store holding them, a TrainContext."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd
import structlog

from forexd.daemon.budget import compute_budget
from forexd.daemon.compute import ComputePool
from forexd.daemon.paths import DaemonPaths
from forexd.daemon.training import TrainContext
from forexd.domain import Bar, get_instrument
from forexd.domain.bars import BarHistory
from forexd.feeds.loaders import bundled_sample_path, load_candles
from forexd.models.trainconfig import Candles
from forexd.storage.db import open_sync

EURUSD = get_instrument("EURUSD")
SMALL_WF = {"n_folds": 3, "min_train_rows": 60}
"""Walk-forward settings small enough for sub-second logistic cycles."""


@functools.cache
def bundled_frame() -> pd.DataFrame:
    """The bundled EURUSD H1 sample (2017-2018, 12k bars)."""
    return load_candles(bundled_sample_path(), "oanda-lean")


def bundled_candles(n: int | None = None, end: int | None = None) -> Candles:
    """Bars ``[end - n, end)`` of the bundled sample as :class:`Candles`."""
    frame = bundled_frame()
    stop = len(frame) if end is None else end
    start = 0 if n is None else stop - n
    return Candles.from_frame(frame.iloc[start:stop])


def store_candles(paths: DaemonPaths, frame: pd.DataFrame, timeframe: str = "H1") -> None:
    """Write candles into the store as the actor does."""
    rows = frame[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False)
    conn = open_sync(paths.db)
    try:
        with conn:
            conn.executemany(
                "INSERT OR IGNORE INTO candles VALUES ('EURUSD', ?, ?, ?, ?, ?, ?, ?)",
                [(timeframe, int(r[0]), *map(float, r[1:])) for r in rows],
            )
    finally:
        conn.close()


def history_of(frame: pd.DataFrame, capacity: int) -> BarHistory:
    """A BarHistory holding the frame's last ``capacity`` bars."""
    history = BarHistory(EURUSD, capacity)
    for r in frame.iloc[-capacity:].itertuples(index=False):
        history.append(Bar("EURUSD", int(r.ts), r.open, r.high, r.low, r.close, r.volume))
    return history


def train_context(
    data_dir: Path, *, workers: int = 1, writer: Any = None, symbols: int = 1
) -> TrainContext:
    """A TrainContext like the daemon's, for one process (blas_threads = 1)."""
    budget = compute_budget(
        2, train_workers=workers, blas_threads=1, max_concurrent_symbols=symbols, reserve=0,
        usable_cpus=max(2, workers),
    )  # fmt: skip
    return TrainContext(
        pool=ComputePool(budget.train_workers, budget.max_concurrent_symbols),
        paths=DaemonPaths(data_dir, data_dir / "run"),
        budget=budget,
        writer=writer,
        log=structlog.get_logger().bind(component="trainer"),
    )
