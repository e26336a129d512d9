"""Out-of-sample metrics: classification quality and the trading result after costs.

The trading functions are vectorised numpy and linear in the number of bars, and know
nothing about models: a backtest can feed them any position series. Conventions:

* ``positions[i]`` is the position held from the close of bar ``i`` to the close of bar
  ``i + 1``, as a signed fraction of the account (``-1``, ``0``, ``+1`` for the simple policy;
  fractions work too). ``close`` therefore has one more value than ``positions``.
* Each change of position crosses half the spread and pays commission on the traded
  notional; the position is closed at the last close (also paid for).
* Returns compound: equity is ``cumprod(1 + net_returns)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.models.errors import LabelError

PROBA_EPS = 1e-15  # log loss clips probabilities to [eps, 1] so one miss is not infinite
H1_PERIODS_PER_YEAR = 24 * 5 * 52  # FX trades ~24h x 5 days; an approximation for Sharpe


@dataclass(frozen=True, slots=True)
class CostModel:
    """Trading costs.

    Attributes:
        spread_pips: full bid/ask spread in pips; a position change pays half of it.
        pip_size: price of one pip (``Instrument.pip_size``).
        commission_per_million: commission in account currency per 1M of traded notional.
    """

    spread_pips: float = 0.0
    pip_size: float = 0.0001
    commission_per_million: float = 0.0

    def cost_per_turnover(self, price: FloatArray) -> FloatArray:
        """Cost, as a fraction of notional, of trading one unit of position at ``price``."""
        half_spread = 0.5 * self.spread_pips * self.pip_size
        cost: FloatArray = half_spread / price + self.commission_per_million / 1e6
        return cost


@dataclass(frozen=True, slots=True)
class TradingMetrics:
    """Result of trading a position series.

    Attributes:
        total_return: compounded return over the period (0.01 = +1 %).
        sharpe: annualised Sharpe ratio of per-bar net returns (0 without variation).
        max_drawdown: largest fall from a peak of equity, as a fraction (0.05 = 5 %).
        trades: positions opened (flat or opposite to long/short).
        exposure: fraction of bars with a position.
        costs: sum of per-bar costs, as a fraction of equity.
        bars: bars traded.
    """

    total_return: float
    sharpe: float
    max_drawdown: float
    trades: int
    exposure: float
    costs: float
    bars: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain values, JSON-ready."""
        return asdict(self)


def positions_from_proba(
    proba: FloatArray, classes: IntArray, *, long_threshold: float, short_threshold: float
) -> FloatArray:
    """Long/short/flat policy: long when P(up) >= ``long_threshold`` and beats P(down).

    "Up" is class ``1``; "down" is class ``-1``, or ``0`` for binary (0/1) labels. Rows
    without probabilities (NaN) stay flat.

    Raises:
        LabelError: the classes have no "up" class, or no "down" class.
    """
    cls = [int(c) for c in classes]
    if 1 not in cls:
        raise LabelError(f"trading policy: no 'up' class (1) among classes {cls}")
    down = -1 if -1 in cls else 0 if cls == [0, 1] else None
    if down is None:
        raise LabelError(f"trading policy: no 'down' class (-1, or 0 of 0/1) among {cls}")
    p_up, p_down = proba[:, cls.index(1)], proba[:, cls.index(down)]
    with np.errstate(invalid="ignore"):
        long = (p_up >= long_threshold) & (p_up > p_down)
        short = (p_down >= short_threshold) & (p_down > p_up)
    out: FloatArray = long.astype(np.float64) - short.astype(np.float64)
    return out


def strategy_returns(
    positions: FloatArray, close: FloatArray, costs: CostModel
) -> tuple[FloatArray, FloatArray]:
    """Per-bar net returns and costs of holding ``positions`` (see the module note).

    Args:
        positions: ``m`` signed positions.
        close: ``m + 1`` closes: position ``i`` is entered at ``close[i]``, marked at
            ``close[i + 1]``.
        costs: spread and commission.

    Returns:
        ``(net_returns, cost)``, each of length ``m``.

    Raises:
        ValueError: ``close`` is not one longer than ``positions``.
    """
    pos = np.asarray(positions, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    if len(close) != len(pos) + 1:
        raise ValueError(
            f"close must have one more value than positions, got {len(close)} and {len(pos)}"
        )
    gross = pos * (close[1:] / close[:-1] - 1.0)
    turnover = np.abs(np.diff(pos, prepend=0.0))
    cost = turnover * costs.cost_per_turnover(close[:-1])
    if len(pos):
        cost[-1] += abs(pos[-1]) * costs.cost_per_turnover(close[-1:])[0]  # close out at the end
    net: FloatArray = gross - cost
    return net, cost


def count_trades(positions: FloatArray) -> int:
    """Positions opened: bars whose position is non-zero with a different sign than before."""
    sign = np.sign(np.asarray(positions, dtype=np.float64))
    prev = np.concatenate(([0.0], sign[:-1]))
    return int(np.count_nonzero((sign != 0) & (sign != prev)))


def max_drawdown(net_returns: FloatArray) -> float:
    """Largest peak-to-trough fall of compounded equity (starting at 1), as a fraction."""
    if len(net_returns) == 0:
        return 0.0
    equity = np.cumprod(1.0 + np.asarray(net_returns, dtype=np.float64))
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    return float(np.max(1.0 - equity / peak))


def sharpe_ratio(net_returns: FloatArray, periods_per_year: float) -> float:
    """Annualised mean over standard deviation of per-bar returns; 0 if they never vary."""
    if len(net_returns) < 2:
        return 0.0
    std = float(np.std(net_returns, ddof=1))
    if std == 0.0 or not np.isfinite(std):
        return 0.0
    return float(np.mean(net_returns)) / std * float(np.sqrt(periods_per_year))


def summarise(
    net_returns: FloatArray, cost: FloatArray, positions: FloatArray, periods_per_year: float
) -> TradingMetrics:
    """Metrics of already computed per-bar returns (e.g. several folds concatenated)."""
    n = len(net_returns)
    return TradingMetrics(
        total_return=float(np.prod(1.0 + net_returns) - 1.0) if n else 0.0,
        sharpe=sharpe_ratio(net_returns, periods_per_year),
        max_drawdown=max_drawdown(net_returns),
        trades=count_trades(positions),
        exposure=float(np.count_nonzero(positions) / n) if n else 0.0,
        costs=float(np.sum(cost)),
        bars=n,
    )


def trading_metrics(
    positions: FloatArray,
    close: FloatArray,
    costs: CostModel,
    periods_per_year: float = H1_PERIODS_PER_YEAR,
) -> TradingMetrics:
    """Trade ``positions`` over ``close`` (one more value) and summarise the result."""
    net, cost = strategy_returns(positions, close, costs)
    return summarise(net, cost, positions, periods_per_year)


def accuracy(y_true: FloatArray, proba: FloatArray, classes: IntArray) -> float:
    """Share of rows whose most probable class is the label (NaN if there are no rows)."""
    if len(y_true) == 0:
        return float("nan")
    predicted = classes[np.argmax(proba, axis=1)]
    return float(np.mean(predicted == y_true))


def log_loss(y_true: FloatArray, proba: FloatArray, classes: IntArray) -> float:
    """Mean negative log probability of the true class; NaN if there are no rows.

    A label of a class the model never saw scores as probability ``PROBA_EPS``.
    """
    if len(y_true) == 0:
        return float("nan")
    idx = np.searchsorted(classes, y_true)
    idx_clipped = np.minimum(idx, len(classes) - 1)
    known = classes[idx_clipped] == y_true
    p = np.where(known, proba[np.arange(len(y_true)), idx_clipped], 0.0)
    return float(-np.mean(np.log(np.clip(p, PROBA_EPS, 1.0))))
