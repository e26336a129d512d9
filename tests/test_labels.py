"""Labels: direction with a dead band, triple barrier, and no label without its future."""

from __future__ import annotations

import numpy as np
import pytest

from forexd.errors import DataError
from forexd.features.labels import direction_labels, triple_barrier_labels
from tests._fxdata import eurusd_h1

PIP = 0.0001
NAN = np.nan


def test_ternary_direction_uses_the_dead_band() -> None:
    """Moves beyond +-band are +1/-1, smaller ones 0; the last N rows have no label."""
    close = 1.1 + PIP * np.array([0.0, 3.0, 1.0, 0.5, 10.0, 9.0])
    labels = direction_labels(close, 2, dead_band_pips=2.0, pip_size=PIP)
    np.testing.assert_array_equal([0.0, -1.0, 1.0, 1.0, NAN, NAN], labels)


def test_binary_direction_leaves_dead_band_moves_unlabelled() -> None:
    """Binary labels are 1 up / 0 down, NaN inside the dead band."""
    close = 1.1 + PIP * np.array([0.0, 3.0, 1.0, 0.5, 10.0, 9.0])
    labels = direction_labels(close, 2, dead_band_pips=2.0, pip_size=PIP, kind="binary")
    np.testing.assert_array_equal([NAN, 0.0, 1.0, 1.0, NAN, NAN], labels)


@pytest.mark.needs_shared
def test_direction_label_of_t_does_not_depend_on_bars_after_t_plus_n() -> None:
    """Truncating the series after t + N leaves label t unchanged; the tail stays NaN."""
    close = eurusd_h1(800).close
    horizon = 6
    full = direction_labels(close, horizon, dead_band_pips=3, pip_size=PIP)
    assert np.isnan(full[-horizon:]).all()
    assert np.isfinite(full[:-horizon]).all()
    for t in range(0, 800 - horizon, 37):
        cut = direction_labels(close[: t + horizon + 1], horizon, dead_band_pips=3, pip_size=PIP)
        assert full[t] == cut[t]
        assert np.isnan(cut[t + 1 :]).all()


def test_triple_barrier_first_touch_decides() -> None:
    """Take profit first is +1, stop first -1, neither 0, both in one bar 0."""
    close = np.full(8, 1.1)
    high = close + PIP
    low = close - PIP
    high[2] = 1.1 + 6 * PIP  # row 0 and 1: upper touched at bar 2
    low[4] = 1.1 - 6 * PIP  # row 2 and 3: lower touched at bar 4 (row 3's up already past)
    high[6], low[6] = 1.1 + 6 * PIP, 1.1 - 6 * PIP  # row 4, 5: both in bar 6
    labels = triple_barrier_labels(
        high, low, close, horizon=2, take_profit=5, stop_loss=5, unit="pips", pip_size=PIP
    )
    np.testing.assert_array_equal([1.0, 1.0, -1.0, -1.0, 0.0, 0.0, NAN, NAN], labels)


def test_triple_barrier_vertical_barrier_gives_zero() -> None:
    """A quiet market touches neither barrier within the horizon."""
    close = np.full(10, 1.1)
    labels = triple_barrier_labels(
        close + PIP, close - PIP, close, horizon=3, take_profit=5, stop_loss=5, pip_size=PIP
    )
    np.testing.assert_array_equal([0.0] * 7 + [NAN] * 3, labels)


@pytest.mark.needs_shared
def test_triple_barrier_in_atr_units_on_real_data() -> None:
    """ATR barriers: NaN during the ATR warm-up and the last N rows, all classes present."""
    bars = eurusd_h1(1500)
    horizon, window = 12, 14
    labels = triple_barrier_labels(
        bars.high,
        bars.low,
        bars.close,
        horizon=horizon,
        take_profit=1.5,
        stop_loss=1.5,
        unit="atr",
        atr_window=window,
    )
    assert np.isnan(labels[:window]).all()
    assert np.isnan(labels[-horizon:]).all()
    body = labels[window:-horizon]
    assert np.isfinite(body).all()
    assert {-1.0, 0.0, 1.0} == set(np.unique(body))


@pytest.mark.needs_shared
def test_triple_barrier_label_of_t_does_not_depend_on_later_bars() -> None:
    """Truncating after t + N leaves triple-barrier label t unchanged."""
    bars = eurusd_h1(600)

    def labels(end: int) -> np.ndarray:
        return triple_barrier_labels(
            bars.high[:end],
            bars.low[:end],
            bars.close[:end],
            horizon=8,
            take_profit=1.0,
            stop_loss=1.0,
            unit="atr",
        )

    full = labels(600)
    for t in range(20, 600 - 8, 29):
        assert full[t] == labels(t + 8 + 1)[t]


def test_bad_label_arguments_are_data_errors() -> None:
    """A zero horizon, missing pip size or non-positive barrier is rejected with its name."""
    close = np.full(10, 1.1)
    with pytest.raises(DataError, match="horizon"):
        direction_labels(close, 0, dead_band_pips=1, pip_size=PIP)
    with pytest.raises(DataError, match="pip_size"):
        triple_barrier_labels(close, close, close, horizon=2, take_profit=1, stop_loss=1)
    with pytest.raises(DataError, match="take_profit"):
        triple_barrier_labels(
            close, close, close, horizon=2, take_profit=0, stop_loss=1, pip_size=PIP
        )
