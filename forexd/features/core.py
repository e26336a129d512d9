"""The feature matrix: one row per bar, one column per :attr:`FeatureSpec.names` entry.

The live path does not have its own implementation: it runs the batch code over the last
:attr:`FeatureSpec.history_bars` bars and keeps the final row. Because every indicator reads
a finite window (see indicators.py), that row equals the batch row to rounding, and there is
one implementation to keep right instead of two. It costs ``history_bars`` rows of work per
bar (a few hundred), well under a millisecond.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.errors import DataError
from forexd.features import calendar, indicators
from forexd.features.spec import FeatureSpec


class Features(NamedTuple):
    """A feature matrix and its column names (unpacks as ``matrix, names``)."""

    matrix: FloatArray
    names: list[str]

    @property
    def first_valid_index(self) -> int:
        """Index of the first row without NaN (``len(matrix)`` if there is none)."""
        return first_valid_index(self.matrix)


def first_valid_index(matrix: FloatArray) -> int:
    """Index of the first row of ``matrix`` whose values are all finite, else its length."""
    complete = np.flatnonzero(np.isfinite(matrix).all(axis=1))
    return int(complete[0]) if len(complete) else len(matrix)


def _validate(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, ts_ns: IntArray
) -> None:
    n = len(close)
    for name, arr in (("open", open_), ("high", high), ("low", low), ("ts_ns", ts_ns)):
        if arr.ndim != 1 or len(arr) != n:
            raise DataError(
                f"features: column {name} has shape {arr.shape}, close has ({n},); "
                "pass equally long 1-D arrays"
            )
    for name, arr in (("open", open_), ("high", high), ("low", low), ("close", close)):
        bad = np.flatnonzero(~(np.isfinite(arr) & (arr > 0)))
        if len(bad):
            raise DataError(
                f"features: column {name} holds {len(bad)} non-finite or non-positive prices "
                f"(first at row {bad[0]}: {arr[bad[0]]!r}); clean the bars first"
            )
    if n > 1:
        back = np.flatnonzero(np.diff(ts_ns) <= 0)
        if len(back):
            raise DataError(
                f"features: timestamps are not strictly increasing at row {back[0] + 1}; "
                "sort the bars and drop duplicates"
            )


def compute_features(
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    ts_ns: IntArray,
    spec: FeatureSpec,
) -> Features:
    """Compute the feature matrix of a whole series.

    Row ``t`` depends on bars ``t - spec.warmup_bars .. t`` only (never on later bars). The
    first ``spec.warmup_bars`` rows are entirely NaN; every later row is finite.

    Args:
        open_: bar opens. No feature reads them yet; they are validated with the other
            columns so that callers always pass a whole OHLC series.
        high: bar highs.
        low: bar lows.
        close: bar closes.
        ts_ns: bar open times, epoch nanoseconds UTC, strictly increasing.
        spec: which features, over which windows.

    Returns:
        ``Features(matrix, names)``: a float64 ``[n, len(spec.names)]`` matrix and the names.

    Raises:
        DataError: columns of different lengths, non-finite or non-positive prices, or
            timestamps that are not strictly increasing.
    """
    open_, high, low, close = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, close))
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    _validate(open_, high, low, close, ts_ns)
    cols: list[FloatArray] = [indicators.log_return(close, h) for h in spec.return_horizons]
    if spec.volatility_windows:
        one_bar = indicators.log_return(close, 1)
        cols += [indicators.rolling_std(one_bar, w) for w in spec.volatility_windows]
    if spec.atr_window is not None:
        cols.append(indicators.atr(high, low, close, spec.atr_window) / close)
    if spec.rsi_window is not None:
        cols.append(indicators.rsi(close, spec.rsi_window))
    if spec.macd is not None:
        cols += indicators.macd(close, spec.macd.fast, spec.macd.slow, spec.macd.signal)
    if spec.bollinger_window is not None:
        cols.append(indicators.bollinger_pctb(close, spec.bollinger_window, spec.bollinger_k))
    cols += [indicators.zscore(close, w) for w in spec.zscore_windows]
    if spec.time_of_day:
        cols += calendar.time_of_day(ts_ns)
    if spec.day_of_week:
        cols += calendar.day_of_week(ts_ns)
    if spec.sessions:
        cols += calendar.sessions(ts_ns)
    matrix = np.column_stack(cols) if len(close) else np.empty((0, len(cols)))
    # Whole warm-up rows are NaN, not just the columns that need more history: one rule
    # ("rows before first_valid_index are unusable") for every consumer.
    matrix[: spec.warmup_bars] = np.nan
    return Features(np.ascontiguousarray(matrix, dtype=np.float64), spec.names)


def compute_features_last(
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    ts_ns: IntArray,
    spec: FeatureSpec,
) -> FloatArray:
    """Feature row of the newest bar, from the trailing ``spec.history_bars`` bars only.

    Args:
        open_: opens, oldest first (e.g. ``BarHistory.opens()``); only the tail is read.
        high: highs, same length.
        low: lows, same length.
        close: closes, same length.
        ts_ns: bar open times, same length.
        spec: the spec the model was trained with.

    Returns:
        A float64 vector of ``len(spec.names)`` values, equal (to rounding) to the last row of
        :func:`compute_features` over the whole series.

    Raises:
        DataError: fewer than ``spec.history_bars`` bars, or bad values in the trailing window.
    """
    need = spec.history_bars
    if len(close) < need:
        raise DataError(
            f"features: the live row needs {need} bars of history, got {len(close)}; "
            "keep at least FeatureSpec.history_bars bars in the window"
        )
    tail = slice(len(close) - need, len(close))
    row: FloatArray = compute_features(
        open_[tail], high[tail], low[tail], close[tail], ts_ns[tail], spec
    ).matrix[-1]
    return row
