"""Technical indicators over numpy arrays, each defined over a finite trailing window.

Options weighed: the textbook RSI, ATR and MACD use recursive (Wilder or exponential)
smoothing, so their value at bar ``t`` depends, however faintly, on every earlier bar. The
live path keeps only a trailing window, so it could never reproduce the batch value exactly,
and a model trained on one would be fed the other. Every indicator here therefore reads a
fixed, finite window ending at ``t``:

* RSI is Cutler's variant (simple averages of gains and losses);
* ATR is the simple mean of the true range;
* an EMA of span ``s`` is a finite-impulse-response filter: weights ``(1 - a)**k`` for the
  last ``EMA_WINDOW_SPANS * s`` inputs (``a = 2 / (s + 1)``), normalised to sum to one.

So row ``t`` is a pure function of rows ``t - warmup .. t``: the batch, truncated and live
computations agree to rounding, and no row can read the future. Values that need more
history than exists are NaN; NaN inputs spread to every window that contains them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from forexd.domain.bars import FloatArray
from forexd.features.spec import EMA_WINDOW_SPANS

BoolArray = npt.NDArray[np.bool_]

ROLLING_CHUNK_ROWS = 8192  # bounds the (rows x window) temporaries of a rolling std
FLAT_RELATIVE_STD = 1e-10
"""A window whose std is below this fraction of its mean is flat: a constant window's std
comes out of floating-point arithmetic as ~1e-16, not 0, and dividing by it is noise."""


def _nan(n: int) -> FloatArray:
    return np.full(n, np.nan, dtype=np.float64)


def _rolling(x: FloatArray, window: int, reduce: Callable[[FloatArray], FloatArray]) -> FloatArray:
    """Apply ``reduce`` (row-wise over a 2-D block of windows) at every position."""
    n = len(x)
    out = _nan(n)
    if n < window:
        return out
    view = sliding_window_view(x, window)
    for start in range(0, len(view), ROLLING_CHUNK_ROWS):
        block = view[start : start + ROLLING_CHUNK_ROWS]
        out[window - 1 + start : window - 1 + start + len(block)] = reduce(block)
    return out


def rolling_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of the last ``window`` values at each position (NaN before that)."""
    return _rolling(x, window, lambda b: b.mean(axis=1))


def rolling_std(x: FloatArray, window: int) -> FloatArray:
    """Population standard deviation of the last ``window`` values (NaN before that)."""
    return _rolling(x, window, lambda b: b.std(axis=1))


def log_return(close: FloatArray, horizon: int) -> FloatArray:
    """``log(close[t] / close[t - horizon])``; NaN for the first ``horizon`` rows."""
    out = _nan(len(close))
    if len(close) > horizon:
        out[horizon:] = np.log(close[horizon:] / close[:-horizon])
    return out


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """Wilder's true range; NaN on the first bar, which has no previous close."""
    out = _nan(len(close))
    if len(close) > 1:
        prev = close[:-1]
        out[1:] = np.maximum(
            high[1:] - low[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev))
        )
    return out


def atr(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Average true range in price units (simple mean); first valid row is ``window``."""
    return rolling_mean(true_range(high, low, close), window)


def rsi(close: FloatArray, window: int) -> FloatArray:
    """Cutler's RSI in 0-100; 50 when the window has no move at all."""
    delta = _nan(len(close))
    delta[1:] = np.diff(close)
    # np.maximum keeps the NaN of the first bar, so the first window stays undefined.
    gains = rolling_mean(np.maximum(delta, 0.0), window)
    losses = rolling_mean(np.maximum(-delta, 0.0), window)
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(total > 0, 100.0 * gains / total, 50.0)
    out[np.isnan(total)] = np.nan
    return out


def ema_weights(span: int) -> FloatArray:
    """Weights of the truncated EMA, newest first, summing to one."""
    alpha = 2.0 / (span + 1.0)
    w = (1.0 - alpha) ** np.arange(EMA_WINDOW_SPANS * span, dtype=np.float64)
    normalised: FloatArray = w / w.sum()
    return normalised


def ema(x: FloatArray, span: int) -> FloatArray:
    """Truncated EMA (see module note); first valid row is ``4 * span - 1``."""
    w = ema_weights(span)
    out = _nan(len(x))
    if len(x) >= len(w):
        # convolve flips the kernel, so w[0] (the largest weight) meets the newest value.
        out[len(w) - 1 :] = np.convolve(x, w, mode="valid")
    return out


def macd(
    close: FloatArray, fast: int, slow: int, signal: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line, signal line and histogram of the *log* close.

    On log prices the line is (about) a relative difference, so the same model works at
    1.05 and at 1.60, and for JPY pairs quoted near 150.
    """
    log_close = np.log(close)
    line = ema(log_close, fast) - ema(log_close, slow)
    sig = ema(line, signal)
    return line, sig, line - sig


def _mean_std(close: FloatArray, window: int) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Rolling mean, std, and whether the window moves at all."""
    mean, std = rolling_mean(close, window), rolling_std(close, window)
    with np.errstate(invalid="ignore"):
        moving: BoolArray = std > FLAT_RELATIVE_STD * np.abs(mean)
    return mean, std, moving


def bollinger_pctb(close: FloatArray, window: int, k: float) -> FloatArray:
    """Bollinger %b: 0 at the lower band, 1 at the upper; 0.5 when the window is flat."""
    mean, std, moving = _mean_std(close, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(moving, (close - mean + k * std) / (2.0 * k * std), 0.5)
    out[np.isnan(std)] = np.nan
    return out


def zscore(close: FloatArray, window: int) -> FloatArray:
    """``(close - mean) / std`` over the window; 0 when the window is flat."""
    mean, std, moving = _mean_std(close, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(moving, (close - mean) / std, 0.0)
    out[np.isnan(std)] = np.nan
    return out
