"""Feature matrix: values, warm-up, live/batch parity and absence of lookahead."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from forexd.errors import DataError
from forexd.features import (
    FeatureSpec,
    MacdSpec,
    calendar,
    compute_features,
    compute_features_last,
    first_valid_index,
    indicators,
)
from tests._fxdata import eurusd_h1

SPEC = FeatureSpec()


def _ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def _flat_bars(n: int, price: float = 1.1) -> tuple[np.ndarray, ...]:
    ts = np.arange(n, dtype=np.int64) * 3_600_000_000_000 + _ns(2024, 1, 1)
    p = np.full(n, price)
    return p, p, p, p, ts


@pytest.mark.needs_shared
def test_live_row_equals_batch_last_row_on_real_data() -> None:
    """The live path, fed only the trailing window, gives the batch path's last row."""
    bars = eurusd_h1(3000)
    full = compute_features(*bars.columns(), SPEC).matrix
    for end in (SPEC.history_bars, 1000, 2471, 3000):
        cols = bars.head(end).columns()
        live = compute_features_last(*(c[end - SPEC.history_bars : end] for c in cols), SPEC)
        np.testing.assert_allclose(live, full[end - 1], rtol=1e-9, atol=0)


@pytest.mark.needs_shared
def test_live_row_ignores_history_before_its_window() -> None:
    """Passing more history than needed does not change the live row."""
    bars = eurusd_h1(2000)
    long = compute_features_last(*bars.columns(), SPEC)
    short = compute_features_last(*(c[-SPEC.history_bars :] for c in bars.columns()), SPEC)
    np.testing.assert_allclose(long, short, rtol=1e-9, atol=0)


@pytest.mark.needs_shared
def test_row_t_is_the_same_on_data_truncated_at_t() -> None:
    """No lookahead: features of bar t computed without later bars equal the full-series row."""
    bars = eurusd_h1(1500)
    full = compute_features(*bars.columns(), SPEC).matrix
    rng = np.random.default_rng(7)
    for t in sorted(rng.choice(np.arange(SPEC.warmup_bars, len(bars)), size=60, replace=False)):
        truncated = compute_features(*bars.head(t + 1).columns(), SPEC).matrix
        np.testing.assert_allclose(truncated[t], full[t], rtol=1e-9, atol=0)


@pytest.mark.needs_shared
def test_warmup_rows_are_nan_and_later_rows_finite() -> None:
    """Rows before warmup_bars are all NaN; every later row of real data is finite."""
    bars = eurusd_h1(1000)
    features = compute_features(*bars.columns(), SPEC)
    matrix = features.matrix
    assert SPEC.warmup_bars == features.first_valid_index
    assert SPEC.warmup_bars == first_valid_index(matrix)
    assert np.isnan(matrix[: SPEC.warmup_bars]).all()
    assert np.isfinite(matrix[SPEC.warmup_bars :]).all()


def test_warmup_is_the_longest_window_needed() -> None:
    """Warm-up follows the most demanding feature selected."""
    spec = FeatureSpec(
        return_horizons=(5,),
        volatility_windows=(),
        atr_window=None,
        rsi_window=None,
        macd=None,
        bollinger_window=None,
        zscore_windows=(30,),
    )
    assert 29 == spec.warmup_bars
    assert 4 * 26 - 1 + 4 * 9 - 1 == SPEC.warmup_bars


def test_columns_match_spec_names() -> None:
    """The matrix has one column per name, in the spec's order."""
    features = compute_features(*_flat_bars(300), SPEC)
    assert SPEC.names == features.names
    assert (300, len(SPEC.names)) == features.matrix.shape
    assert np.float64 == features.matrix.dtype


def test_flat_prices_give_finite_neutral_features() -> None:
    """A flat market gives zero returns, RSI 50, %b 0.5 and z-score 0 instead of NaN."""
    features = compute_features(*_flat_bars(300), SPEC)
    row = dict(zip(features.names, features.matrix[-1], strict=True))
    assert 0.0 == row["ret_1"]
    assert 50.0 == row["rsi_14"]
    assert 0.5 == row["bb_pctb_20"]
    assert 0.0 == row["zscore_48"]
    assert 0.0 == row["macd_hist"]


def test_log_return_and_true_range_values() -> None:
    """Returns are log(c[t]/c[t-h]); the true range includes gaps from the previous close."""
    close = np.array([1.0, 1.1, 1.21, 1.0])
    np.testing.assert_allclose(
        [np.nan, np.nan, np.log(1.21), np.log(1.0 / 1.1)], indicators.log_return(close, 2)
    )
    high = np.array([1.0, 1.2, 1.3, 1.05])
    low = np.array([0.9, 1.15, 1.2, 0.95])
    expected = [np.nan, 0.2, 0.2, 0.26]  # gap up from 1.0; range; gap down from 1.21
    np.testing.assert_allclose(expected, indicators.true_range(high, low, close))


def test_rsi_is_100_when_every_bar_rises() -> None:
    """Cutler's RSI reads 100 when the window holds gains only."""
    close = np.linspace(1.0, 1.5, 40)
    assert 100.0 == pytest.approx(indicators.rsi(close, 14)[-1])


@pytest.mark.needs_shared
def test_truncated_ema_is_close_to_the_recursive_ema() -> None:
    """The finite-window EMA stays within 0.1 pip of pandas' full-history EMA."""
    close = eurusd_h1(2000).close
    ours = indicators.ema(close, 26)
    theirs = pd.Series(close).ewm(span=26, adjust=True).mean().to_numpy()
    np.testing.assert_allclose(ours[200:], theirs[200:], rtol=0, atol=1e-5)


def test_sessions_follow_daylight_saving_time() -> None:
    """London and New York open an hour earlier in UTC during their summer time."""
    cases = {
        (2021, 1, 15, 7, 30): (1.0, 0.0, 0.0),  # London opens 08:00 UTC in winter
        (2021, 1, 15, 8, 30): (1.0, 1.0, 0.0),  # (Tokyo: 17:30 local, still open)
        (2021, 7, 15, 7, 30): (1.0, 1.0, 0.0),  # ... and 07:00 UTC in summer
        (2021, 1, 15, 12, 30): (0.0, 1.0, 0.0),  # New York opens 13:00 UTC in winter
        (2021, 7, 15, 12, 30): (0.0, 1.0, 1.0),  # ... and 12:00 UTC in summer
        (2021, 3, 20, 12, 30): (0.0, 1.0, 1.0),  # US already on DST, EU not yet
        (2021, 1, 15, 0, 30): (1.0, 0.0, 0.0),  # 09:30 in Tokyo
        (2021, 1, 15, 9, 30): (0.0, 1.0, 0.0),  # 18:30 in Tokyo: closed
    }
    ts = np.array([_ns(*k) for k in cases], dtype=np.int64)
    flags = np.column_stack(calendar.sessions(ts))
    np.testing.assert_array_equal(np.array(list(cases.values())), flags)


def test_day_of_week_and_time_of_day_angles() -> None:
    """Monday 00:00 UTC sits at angle 0 of both cycles; 06:00 at a quarter day."""
    ts = np.array([_ns(2024, 1, 1, 0), _ns(2024, 1, 1, 6)], dtype=np.int64)  # a Monday
    dow_sin, dow_cos = calendar.day_of_week(ts)
    tod_sin, _ = calendar.time_of_day(ts)
    np.testing.assert_allclose([0.0, 0.0], dow_sin, atol=1e-12)
    np.testing.assert_allclose([1.0, 1.0], dow_cos)
    np.testing.assert_allclose([0.0, 1.0], tod_sin, atol=1e-12)


def test_spec_rejects_unknown_keys_and_bad_windows() -> None:
    """The spec forbids unknown keys, duplicate windows and fast >= slow MACD spans."""
    with pytest.raises(ValidationError, match="Extra inputs"):
        FeatureSpec(rsi=14)
    with pytest.raises(ValidationError, match="twice"):
        FeatureSpec(return_horizons=(3, 3))
    with pytest.raises(ValidationError, match=r"smaller than macd\.slow"):
        MacdSpec(fast=26, slow=12)


def test_nan_price_is_a_data_error() -> None:
    """A NaN close is reported with its row instead of producing NaN features."""
    o, h, low, c, ts = _flat_bars(100)
    c = c.copy()
    c[42] = np.nan
    with pytest.raises(DataError, match="row 42"):
        compute_features(o, h, low, c, ts, SPEC)


def test_unsorted_timestamps_are_a_data_error() -> None:
    """Bars out of time order are rejected."""
    o, h, low, c, ts = _flat_bars(100)
    ts = ts.copy()
    ts[10], ts[11] = ts[11], ts[10]
    with pytest.raises(DataError, match="not strictly increasing"):
        compute_features(o, h, low, c, ts, SPEC)


def test_live_path_with_short_history_is_a_data_error() -> None:
    """The live path says how many bars it needs."""
    cols = _flat_bars(SPEC.history_bars - 1)
    with pytest.raises(DataError, match=f"needs {SPEC.history_bars} bars"):
        compute_features_last(*cols, SPEC)
