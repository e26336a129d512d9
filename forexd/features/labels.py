"""Training labels: what happened *after* bar ``t``, for a model that decides at bar ``t``.

Labels are float64 arrays with NaN where no label exists. The last ``horizon`` rows are
always NaN, whatever the prices did: their outcome is not known yet at the end of the
series, and giving them a partial outcome would let the latest training rows see a future
the live model never sees. Label values:

* ``direction_labels(kind="ternary")``: ``+1`` up by more than the dead band, ``-1`` down
  by more than it, ``0`` in between.
* ``direction_labels(kind="binary")``: ``1`` up, ``0`` down; moves inside the dead band are
  NaN, so a binary classifier learns from decisive moves only (and is trained on fewer rows).
* ``triple_barrier_labels``: ``+1`` the take-profit barrier is touched first, ``-1`` the stop,
  ``0`` neither within ``horizon`` bars (the vertical barrier) or both inside the same bar,
  where OHLC cannot tell which came first.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from forexd.domain.bars import FloatArray
from forexd.errors import DataError
from forexd.features.indicators import atr

LabelKind = Literal["ternary", "binary"]
BarrierUnit = Literal["pips", "atr"]


def _check_horizon(horizon: int) -> None:
    if horizon < 1:
        raise DataError(f"labels: horizon must be at least 1 bar, got {horizon}")


def direction_labels(
    close: FloatArray,
    horizon: int,
    *,
    dead_band_pips: float,
    pip_size: float,
    kind: LabelKind = "ternary",
) -> FloatArray:
    """Direction of the close ``horizon`` bars ahead, with a dead band.

    Args:
        close: closes, oldest first.
        horizon: bars ahead (``N``); the last ``N`` labels are NaN.
        dead_band_pips: moves of at most this many pips count as "no move".
        pip_size: price of one pip (``Instrument.pip_size``).
        kind: ``ternary`` (-1/0/+1) or ``binary`` (0/1, dead-band moves NaN).

    Returns:
        float64 labels, NaN where undefined.

    Raises:
        DataError: a horizon below 1, an unknown kind, a negative dead band or pip size.
    """
    _check_horizon(horizon)
    if kind not in ("ternary", "binary"):
        raise DataError(f"labels: kind must be 'ternary' or 'binary', got {kind!r}")
    if dead_band_pips < 0 or pip_size <= 0:
        raise DataError(
            f"labels: dead_band_pips must be >= 0 and pip_size > 0, "
            f"got {dead_band_pips} and {pip_size}"
        )
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    if len(close) <= horizon:
        return out
    move = close[horizon:] - close[:-horizon]
    band = dead_band_pips * pip_size
    up, down = move > band, move < -band
    if kind == "ternary":
        out[:-horizon] = np.where(up, 1.0, np.where(down, -1.0, 0.0))
    else:
        out[:-horizon] = np.where(up, 1.0, np.where(down, 0.0, np.nan))
    return out


def triple_barrier_labels(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    *,
    horizon: int,
    take_profit: float,
    stop_loss: float,
    unit: BarrierUnit = "pips",
    pip_size: float | None = None,
    atr_window: int = 14,
) -> FloatArray:
    """Triple-barrier labels from the long side, entering at the close of bar ``t``.

    The barriers sit at ``close[t] + take_profit`` and ``close[t] - stop_loss`` (in pips, or
    in multiples of the ATR at bar ``t``, which reads bars up to ``t`` only). Bars
    ``t + 1 .. t + horizon`` are scanned: the first bar whose high or low reaches a barrier
    decides. Cost: ``horizon`` vectorised passes over the series.

    Args:
        high: bar highs.
        low: bar lows.
        close: bar closes.
        horizon: vertical barrier in bars; the last ``horizon`` labels are NaN.
        take_profit: upper barrier distance (> 0).
        stop_loss: lower barrier distance (> 0).
        unit: ``pips`` (needs ``pip_size``) or ``atr``.
        pip_size: price of one pip, for ``unit="pips"``.
        atr_window: ATR window for ``unit="atr"``; labels are NaN while it warms up.

    Returns:
        float64 labels in {-1, 0, +1}, NaN where undefined.

    Raises:
        DataError: a bad horizon or barrier, a missing pip size, or columns of different lengths.
    """
    _check_horizon(horizon)
    if take_profit <= 0 or stop_loss <= 0:
        raise DataError(
            f"labels: take_profit and stop_loss must be > 0, got {take_profit} and {stop_loss}"
        )
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    if not len(high) == len(low) == len(close):
        raise DataError(
            f"labels: high, low and close have lengths {len(high)}, {len(low)}, {len(close)}; "
            "pass equally long arrays"
        )
    n = len(close)
    if unit not in ("pips", "atr"):
        raise DataError(f"labels: unit must be 'pips' or 'atr', got {unit!r}")
    if unit == "pips":
        if pip_size is None or pip_size <= 0:
            raise DataError("labels: unit='pips' needs pip_size > 0 (Instrument.pip_size)")
        up_dist = np.full(n, take_profit * pip_size)
        down_dist = np.full(n, stop_loss * pip_size)
    else:
        scale = atr(high, low, close, atr_window)
        up_dist, down_dist = take_profit * scale, stop_loss * scale
    out = np.full(n, np.nan)
    m = n - horizon
    if m <= 0:
        return out
    upper = close[:m] + up_dist[:m]
    lower = close[:m] - down_dist[:m]
    label = np.zeros(m)
    open_ = np.ones(m, dtype=bool)  # no barrier touched yet
    for k in range(1, horizon + 1):
        hit_up = open_ & (high[k : k + m] >= upper)
        hit_down = open_ & (low[k : k + m] <= lower)
        label[hit_up & ~hit_down] = 1.0
        label[hit_down & ~hit_up] = -1.0  # both in one bar: stays 0 (order unknown)
        open_ &= ~(hit_up | hit_down)
    label[~np.isfinite(upper) | ~np.isfinite(lower)] = np.nan
    out[:m] = label
    return out
