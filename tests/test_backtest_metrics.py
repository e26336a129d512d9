"""Backtest metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forexd.backtest.metrics import (
    Metrics,
    bars_per_year,
    compute_metrics,
    drawdown,
    monthly_returns,
    trade_stats,
    underwater_spell,
)

DAY_NS = 86_400 * 1_000_000_000
T0 = 1_483_228_800 * 1_000_000_000  # 2017-01-01T00:00Z


def _days(n: int) -> np.ndarray:
    return T0 + DAY_NS * np.arange(n, dtype=np.int64)


def _metrics(
    equity: list[float], pnl: list[float] | None = None, exposed: list[bool] | None = None
) -> Metrics:
    eq = np.array(equity)
    return compute_metrics(
        eq,
        _days(len(eq)),
        100.0,
        np.array(pnl or [], dtype=float),
        np.array(exposed if exposed is not None else [True] * len(eq)),
        "D1",
    )


def test_returns_volatility_sharpe_and_sortino_match_the_hand_computation() -> None:
    """Returns +10%, -10%, 0%, +10% on D1 bars (260 a year, the nominal rate)."""
    m = _metrics([110.0, 99.0, 99.0, 108.9])
    # mean 0.025; std (ddof 1) = sqrt(0.0275 / 3) = 0.0957427; sqrt(260) = 16.124515
    assert 0.089 == pytest.approx(m.total_return)
    assert 260.0 == m.bars_per_year
    assert 1.089**65 - 1 == pytest.approx(m.annual_return)  # 4 bars = 1/65 of a year
    assert 0.0957427108 * 16.1245155 == pytest.approx(m.annual_volatility, rel=1e-8)
    assert 4.2103767916 == pytest.approx(m.sharpe, rel=1e-9)
    # downside deviation sqrt((0 + 0.01 + 0 + 0) / 4) = 0.05
    assert 0.025 / 0.05 * 16.1245154966 == pytest.approx(m.sortino, rel=1e-9)


def test_max_drawdown_is_the_largest_fall_from_a_running_peak() -> None:
    """110 -> 99 is a 10% drawdown; ending at 108.9 is still 1% under water."""
    dd = drawdown(np.array([110.0, 99.0, 99.0, 108.9]), 100.0)
    assert [0.0, 0.1, 0.1, 0.01] == pytest.approx(dd.tolist())
    assert 0.1 == pytest.approx(_metrics([110.0, 99.0, 99.0, 108.9]).max_drawdown)


def test_initial_balance_is_the_first_peak() -> None:
    """Losing from the start counts against the initial balance."""
    assert 0.2 == pytest.approx(float(drawdown(np.array([90.0, 80.0]), 100.0).max()))


def test_drawdown_duration_runs_from_the_peak_to_recovery() -> None:
    """Peak on day 1, under water on day 2, back above on day 3: 2 days, 1 bar."""
    equity = np.array([100.0, 105.0, 100.0, 106.0, 104.0])
    days, bars = underwater_spell(equity, 100.0, _days(5))
    assert (2.0, 1) == (days, bars)


def test_unrecovered_drawdown_lasts_until_the_last_bar() -> None:
    """Peak on day 0, never regained over days 1-5: 5 days, 5 bars."""
    equity = np.array([110.0, 100.0, 101.0, 102.0, 103.0, 104.0])
    assert (5.0, 5) == underwater_spell(equity, 100.0, _days(6))


def test_no_drawdown_has_zero_duration() -> None:
    """A curve that only rises is never under water."""
    assert (0.0, 0) == underwater_spell(np.array([101.0, 102.0]), 100.0, _days(2))


def test_trade_statistics_use_net_pnl() -> None:
    """P&L 10, -5, 20, -5, 0: 2 wins of 5, profit factor 30/10, average 4."""
    assert (0.4, 3.0, 4.0) == trade_stats(np.array([10.0, -5.0, 20.0, -5.0, 0.0]))


def test_profit_factor_without_losses_is_infinite_and_without_trades_undefined() -> None:
    """Only wins: inf; no trades: every trade statistic is nan."""
    assert math.inf == trade_stats(np.array([1.0, 2.0]))[1]
    assert all(math.isnan(v) for v in trade_stats(np.array([])))


def test_exposure_is_the_share_of_bars_with_a_position() -> None:
    """Held during 3 of 4 bars: 75%."""
    m = _metrics([100.0, 101.0, 102.0, 101.0], exposed=[False, True, True, True])
    assert 0.75 == m.exposure


def test_trade_count_and_average_come_from_closed_trades() -> None:
    """Three trades of 3, -1, 1 USD: 3 trades averaging 1 USD."""
    m = _metrics([100.0, 103.0, 102.0, 103.0], pnl=[3.0, -1.0, 1.0])
    assert (3, 1.0, 4.0) == (m.trades, m.avg_trade, m.profit_factor)


def test_bars_per_year_is_observed_over_long_spans() -> None:
    """1,000 H1 bars spread over 100 days: 1000 / (100 / 365.25) a year."""
    hour = 3_600 * 1_000_000_000
    ts = T0 + (np.arange(1000, dtype=np.int64) * (100 * 24 * hour - hour)) // 999
    assert 3652.5 == pytest.approx(bars_per_year(ts, "H1"))


def test_bars_per_year_falls_back_to_the_nominal_rate_for_short_spans() -> None:
    """A week of M1 uses 260 days x 1,440 minutes."""
    ts = T0 + 60_000_000_000 * np.arange(7 * 1440, dtype=np.int64)
    assert 260 * 1440 == bars_per_year(ts, "M1")


def test_flat_equity_has_undefined_sharpe_and_sortino() -> None:
    """No variance: nan, reported as None in JSON."""
    m = _metrics([100.0, 100.0, 100.0])
    assert math.isnan(m.sharpe)
    assert math.isnan(m.sortino)
    assert m.to_dict()["sharpe"] is None


def test_monthly_returns_chain_month_end_equity() -> None:
    """Jan ends at 110 (+10% on 100), Feb at 99 (-10%), March has no bars."""
    ts = np.array(
        [T0, T0 + 30 * DAY_NS, T0 + 31 * DAY_NS, T0 + 58 * DAY_NS, T0 + 100 * DAY_NS],
        dtype=np.int64,
    )
    equity = np.array([105.0, 110.0, 100.0, 99.0, 99.0])
    years, table = monthly_returns(ts, equity, 100.0)
    assert [2017] == years
    assert [0.1, -0.1] == pytest.approx(table[0, :2].tolist())
    assert math.isnan(table[0, 2])
    assert 0.0 == pytest.approx(table[0, 3])  # April: 99 -> 99
