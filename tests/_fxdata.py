"""Test helpers: real EURUSD H1 bars from ../shared/data/fx, and thread caps for fits.

The bars are read with pandas directly (the loader module is written separately); the Lean
hourly file is UTC with columns ``YYYYMMDD HH:mm, bid o,h,l,c, size, ask o,h,l,c, size``.
Tests use mid prices.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from forexd.domain.bars import FloatArray, IntArray

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx"
LEAN_H1_EURUSD = DATA_DIR / "lean_oanda" / "hour" / "eurusd.csv.gz"


@dataclass(frozen=True)
class Ohlc:
    """Aligned bar columns (mid prices, epoch-ns UTC open times)."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray

    def __len__(self) -> int:
        return len(self.ts)

    def head(self, n: int) -> Ohlc:
        """The first ``n`` bars."""
        return Ohlc(self.ts[:n], self.open[:n], self.high[:n], self.low[:n], self.close[:n])

    def columns(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray]:
        """``(open, high, low, close, ts)``, the argument order of compute_features."""
        return self.open, self.high, self.low, self.close, self.ts


@functools.cache
def _load_all() -> Ohlc:
    df = pd.read_csv(LEAN_H1_EURUSD, header=None)
    ts = pd.to_datetime(df[0], format="%Y%m%d %H:%M").to_numpy("datetime64[ns]").astype(np.int64)
    mid = [(df[i].to_numpy(np.float64) + df[i + 5].to_numpy(np.float64)) / 2 for i in (1, 2, 3, 4)]
    return Ohlc(ts, *mid)


def eurusd_h1(n: int, offset: int = 0) -> Ohlc:
    """``n`` consecutive bars ending ``offset`` bars before the file's end; skip without data."""
    if not LEAN_H1_EURUSD.exists():
        pytest.skip(f"real FX data not found at {LEAN_H1_EURUSD} (../shared/data/fx is absent)")
    data = _load_all()
    end = len(data) - offset
    s = slice(end - n, end)
    return Ohlc(data.ts[s], data.open[s], data.high[s], data.low[s], data.close[s])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Cap BLAS/OpenMP (and torch, if loaded) to one thread, as the runtime's budget would.

    On a small shared CI box, uncapped OpenMP spin-waiting makes torch training ~100x slower.
    """
    torch = None
    with contextlib.suppress(ImportError):
        import torch
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


@dataclass(frozen=True)
class Dataset:
    """Features over real bars with ternary direction labels, warm-up rows kept (NaN)."""

    x: FloatArray
    y: FloatArray
    close: FloatArray
    ts: IntArray
    names: list[str]
    first_valid: int
    horizon: int


@functools.cache
def labelled_dataset(n: int, horizon: int = 6, dead_band_pips: float = 3.0) -> Dataset:
    """``n`` bars of EURUSD H1 turned into default features and -1/0/+1 labels."""
    from forexd.features import FeatureSpec, compute_features
    from forexd.features.labels import direction_labels

    bars = eurusd_h1(n)
    features = compute_features(*bars.columns(), FeatureSpec())
    y = direction_labels(bars.close, horizon, dead_band_pips=dead_band_pips, pip_size=0.0001)
    return Dataset(
        features.matrix,
        y,
        bars.close,
        bars.ts,
        features.names,
        features.first_valid_index,
        horizon,
    )
