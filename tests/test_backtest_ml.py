"""The ML strategy retrains inside a backtest, with the daemon's cycle and rule."""

from __future__ import annotations

import pytest

from forexd.backtest import run_backtest
from forexd.backtest.request import BacktestRequest
from forexd.brokers.ledger import CostModel

ML_PARAMS = {
    "lookback_candles": 600,
    "retrain_every_bars": 500,
    "walk_forward": {"n_folds": 3, "min_train_rows": 60},
    "model": {"kind": "logistic"},
}


def test_ml_backtest_trains_a_champion_and_then_trades() -> None:
    """A year of H1: the first cycle after the lookback promotes a model; orders follow."""
    request = BacktestRequest(
        symbols=("EURUSD",),
        strategy="ml",
        params=ML_PARAMS,
        end="2018-01-01",
        costs=CostModel(spread_pips=0.8),
    )
    result = run_backtest(request)
    assert len(result.fills) > 0
    assert result.fills.ts.min() > result.data.ts[600]  # nothing before the first model


def test_ml_backtest_is_deterministic() -> None:
    """Same bars, same seed: the same fills twice (the cycle is seeded)."""
    request = BacktestRequest(
        symbols=("EURUSD",),
        strategy="ml",
        params=ML_PARAMS,
        end="2017-07-01",
        costs=CostModel(spread_pips=0.0),
    )
    first, second = run_backtest(request), run_backtest(request)
    assert first.fills.ts.tolist() == second.fills.ts.tolist()
    assert first.fills.price.tolist() == pytest.approx(second.fills.price.tolist())
