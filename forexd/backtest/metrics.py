"""Performance metrics of a backtest, each one pass over the bars or the trades.

Definitions (all documented in ``docs/backtesting.md``):

- Returns are per bar: ``r[i] = equity[i] / equity[i-1] - 1`` with ``equity[-1]`` the
  initial balance, so the first bar's P&L counts.
- Annualisation uses *bars per year*. FX trades about five days a week with gaps, so the
  nominal count of a timeframe (525,600 minutes in a year) overstates it by ~40% for M1.
  When the data spans at least ``MIN_OBSERVED_DAYS`` the observed rate is used: bars divided
  by the span in years (365.25 days; span = last bar time - first bar time + one bar).
  Shorter data falls back to the timeframe's nominal trading rate: 260 trading days of 24 h.
- Annualised return is compound: ``(final / initial) ** (1 / years) - 1``, with ``years =
  bars / bars_per_year``; annualised volatility is ``std(r, ddof=1) * sqrt(bars_per_year)``.
- Sharpe is ``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)`` with a zero risk-free rate;
  Sortino replaces the standard deviation by the downside deviation
  ``sqrt(mean(min(r, 0) ** 2))`` over all bars (target return 0).
- Maximum drawdown is the largest fall from a running peak of equity (the initial balance
  is the first peak), as a positive fraction. Its duration is the longest time spent under
  water: from the peak to the first bar back at or above it (or the last bar if equity
  never recovered), in days and in bars.
- Trade statistics use closed trades' net P&L (commission included): win rate is the share
  of trades with P&L > 0; profit factor is gross wins over gross losses (``inf`` with no
  losses, ``nan`` with no trades); average trade is the mean P&L.
- Exposure is the share of bars during which any position was held.

Undefined values (no variance, no trades) are ``nan`` (``None`` in JSON); a ranking puts
them last.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from forexd.domain import NS_PER_S
from forexd.domain.bars import FloatArray, IntArray
from forexd.domain.timeframes import TIMEFRAME_SECONDS

SECONDS_PER_YEAR = 365.25 * 86_400
SECONDS_PER_DAY = 86_400
TRADING_DAYS_PER_YEAR = 260  # FX: five days a week, holidays ignored
MIN_OBSERVED_DAYS = 30.0  # shorter spans say little about the weekly rhythm of the data

RANK_METRICS: dict[str, bool] = {
    # name: whether higher is better
    "sharpe": True,
    "sortino": True,
    "total_return": True,
    "annual_return": True,
    "profit_factor": True,
    "win_rate": True,
    "avg_trade": True,
    "final_equity": True,
    "max_drawdown": False,
    "annual_volatility": False,
}


@dataclass(frozen=True, slots=True)
class Metrics:
    """The figures of one backtest (fractions, not percent; money in USD)."""

    initial_balance: float
    final_equity: float
    total_return: float
    annual_return: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_duration_days: float
    max_drawdown_duration_bars: int
    trades: int
    win_rate: float
    profit_factor: float
    avg_trade: float
    exposure: float
    bars: int
    bars_per_year: float
    years: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite values become ``None``."""
        return {k: _finite(v) for k, v in asdict(self).items()}

    def value(self, name: str) -> float:
        """A metric by name (for ranking)."""
        return float(getattr(self, name))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ratio(num: float, den: float) -> float:
    """``num / den`` for a positive ``den``; else ``inf`` if ``num`` > 0, else ``nan``."""
    if den > 0:
        return num / den
    return math.inf if num > 0 else math.nan


def bars_per_year(ts: IntArray, timeframe: str) -> float:
    """Observed bars per year, or the timeframe's nominal rate for short data."""
    bar_s = TIMEFRAME_SECONDS[timeframe]
    nominal = TRADING_DAYS_PER_YEAR * SECONDS_PER_DAY / bar_s
    if len(ts) < 2:
        return nominal
    span_s = (int(ts[-1]) - int(ts[0])) / NS_PER_S + bar_s
    if span_s < MIN_OBSERVED_DAYS * SECONDS_PER_DAY:
        return nominal
    return len(ts) / (span_s / SECONDS_PER_YEAR)


def bar_returns(equity: FloatArray, initial: float) -> FloatArray:
    """Per-bar simple returns, the first against the initial balance."""
    prev = np.empty_like(equity)
    prev[0] = initial
    prev[1:] = equity[:-1]
    out: FloatArray = equity / prev - 1.0
    return out


def drawdown(equity: FloatArray, initial: float) -> FloatArray:
    """Fall from the running peak at each bar, as a positive fraction."""
    peak = np.maximum.accumulate(np.maximum(equity, initial))
    out: FloatArray = 1.0 - equity / peak
    return out


def underwater_spell(equity: FloatArray, initial: float, ts: IntArray) -> tuple[float, int]:
    """Longest time under the running peak: (days, bars)."""
    peak = np.maximum.accumulate(np.maximum(equity, initial))
    under = equity < peak
    if not under.any():
        return 0.0, 0
    edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)  # first bar under water
    ends = np.flatnonzero(edges == -1)  # first bar back at the peak (may be len(equity))
    bars = ends - starts
    # The spell begins at the bar that set the peak (or at the start for the initial one)
    # and ends at the recovery bar, or the last bar when equity never recovered.
    begin_ts = ts[np.maximum(starts - 1, 0)]
    end_ts = ts[np.minimum(ends, len(ts) - 1)]
    days = (end_ts - begin_ts) / (NS_PER_S * SECONDS_PER_DAY)
    longest = int(np.argmax(days))
    return float(days[longest]), int(bars[longest])


def trade_stats(net_pnl: FloatArray) -> tuple[float, float, float]:
    """Win rate, profit factor and average trade of closed trades' net P&L."""
    if len(net_pnl) == 0:
        return math.nan, math.nan, math.nan
    wins = net_pnl[net_pnl > 0]
    losses = net_pnl[net_pnl < 0]
    gross_loss = float(-losses.sum())
    gross_win = float(wins.sum())
    return len(wins) / len(net_pnl), _ratio(gross_win, gross_loss), float(net_pnl.mean())


def compute_metrics(
    equity: FloatArray,
    ts: IntArray,
    initial: float,
    net_pnl: FloatArray,
    exposed: np.ndarray,
    timeframe: str,
) -> Metrics:
    """All metrics of one run.

    Args:
        equity: account equity after each bar.
        ts: bar open times (epoch ns), same length.
        initial: initial balance.
        net_pnl: closed trades' P&L net of commission.
        exposed: whether a position was held during each bar.
        timeframe: bar timeframe (for the nominal annualisation).
    """
    n = len(equity)
    if n == 0:
        raise ValueError("no bars")
    per_year = bars_per_year(ts, timeframe)
    years = n / per_year
    final = float(equity[-1])
    total = final / initial - 1.0
    growth = final / initial
    annual = growth ** (1.0 / years) - 1.0 if growth > 0 else -1.0
    r = bar_returns(equity, initial)
    std = float(r.std(ddof=1)) if n > 1 else math.nan
    mean = float(r.mean())
    root = math.sqrt(per_year)
    sharpe = mean / std * root if std > 0 else math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    sortino = _ratio(mean, downside) * root
    dd_days, dd_bars = underwater_spell(equity, initial, ts)
    win_rate, factor, avg = trade_stats(net_pnl)
    return Metrics(
        initial_balance=initial,
        final_equity=final,
        total_return=total,
        annual_return=annual,
        annual_volatility=std * root,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=float(drawdown(equity, initial).max()),
        max_drawdown_duration_days=dd_days,
        max_drawdown_duration_bars=dd_bars,
        trades=len(net_pnl),
        win_rate=win_rate,
        profit_factor=factor,
        avg_trade=avg,
        exposure=float(np.count_nonzero(exposed)) / n,
        bars=n,
        bars_per_year=per_year,
        years=years,
    )


def monthly_returns(
    ts: IntArray, equity: FloatArray, initial: float
) -> tuple[list[int], FloatArray]:
    """Return of each calendar month (UTC) from month-end equity.

    Returns:
        The years covered and a ``(years, 12)`` table; months without bars are ``nan``.
        The first month is measured against the initial balance.
    """
    month = ts.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    last = np.flatnonzero(np.append(month[1:] != month[:-1], True))
    end = equity[last]
    start = np.concatenate(([initial], end[:-1]))
    first_year = int(month[0] // 12) + 1970
    years = list(range(first_year, int(month[-1] // 12) + 1971))
    table = np.full((len(years), 12), np.nan)
    m = month[last]
    table[m // 12 + 1970 - first_year, m % 12] = end / start - 1.0
    return years, table
