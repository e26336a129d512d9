"""Walk-forward folds, out-of-sample scores, trading metrics and the errors users can hit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from forexd.models import (
    ConstantSeriesError,
    CostModel,
    FeatureError,
    FitError,
    InsufficientDataError,
    LabelError,
    ModelSpec,
    WalkForwardConfig,
    WalkForwardResult,
    trading_metrics,
    walk_forward,
)
from forexd.models.metrics import (
    count_trades,
    log_loss,
    max_drawdown,
    positions_from_proba,
    sharpe_ratio,
)
from tests._fxdata import Dataset, labelled_dataset, one_thread

PIP = 0.0001
LOGISTIC = ModelSpec(kind="logistic")


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def data() -> Dataset:
    """1,200 bars of real features and labels (horizon 6)."""
    return labelled_dataset(1200)


def _run(
    d: Dataset,
    config: WalkForwardConfig,
    spec: ModelSpec = LOGISTIC,
    *,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    close: np.ndarray | None = None,
    **kw: Any,
) -> WalkForwardResult:
    return walk_forward(
        spec,
        d.x if x is None else x,
        d.y if y is None else y,
        d.close if close is None else close,
        pip_size=PIP,
        config=config,
        n_jobs=1,
        seed=0,
        **kw,
    )


@pytest.mark.needs_shared
@pytest.mark.parametrize("scheme", ["rolling", "anchored"])
def test_folds_tile_the_window_with_a_purged_gap(scheme: str, data: Dataset) -> None:
    """Test folds are consecutive; no training label reaches into its test fold."""
    config = WalkForwardConfig(
        lookback_candles=1000, n_folds=4, test_size=100, embargo_bars=2, scheme=scheme
    )
    result = _run(data, config)
    folds = result.folds
    assert 6 == result.purge_bars  # the labels' horizon, inferred from the unlabelled tail
    assert len(data.y) - 6 == result.window_end == folds[-1].test_end
    assert [f.test_end for f in folds[:-1]] == [f.test_start for f in folds[1:]]
    for fold in folds:
        assert fold.train_end + 6 + 2 == fold.test_start
        assert fold.train_end - 1 + data.horizon < fold.test_start  # last label's bar
        assert fold.train_start >= result.window_start
    starts = {f.train_start for f in folds}
    sizes = {f.train_rows for f in folds}
    assert (1 if scheme == "anchored" else 4) == len(starts)
    assert (4 if scheme == "anchored" else 1) == len(sizes)


@pytest.mark.needs_shared
def test_result_scores_every_fold_and_serialises(data: Dataset) -> None:
    """Each fold has accuracy, log loss and trading metrics; to_dict is plain JSON."""
    config = WalkForwardConfig(lookback_candles=900, n_folds=3)
    result = _run(data, config, ts_ns=data.ts, feature_names=data.names)
    assert 3 == len(result.folds)
    for fold in result.folds:
        assert 0.0 <= fold.accuracy <= 1.0
        assert fold.log_loss > 0
        assert fold.test_rows == fold.trading.bars
        assert fold.test_from is not None and fold.test_from.endswith("Z")
    pooled = sum(f.accuracy * f.labelled_test_rows for f in result.folds) / sum(
        f.labelled_test_rows for f in result.folds
    )
    assert pooled == pytest.approx(result.accuracy)
    assert sum(f.trading.trades for f in result.folds) == result.trading.trades
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert "logistic" == json.loads(text)["spec"]["kind"]


@pytest.mark.needs_shared
def test_progress_is_reported_after_each_fold(data: Dataset) -> None:
    """The callback sees 0 of N, then every completed fold."""
    seen: list[tuple[int, int]] = []
    config = WalkForwardConfig(lookback_candles=800, n_folds=3)
    _run(data, config, progress=lambda done, total: seen.append((done, total)))
    assert [(0, 3), (1, 3), (2, 3), (3, 3)] == seen


@pytest.mark.needs_shared
def test_gru_folds_use_earlier_rows_as_context(data: Dataset) -> None:
    """A sequence model predicts every test row (its context comes from before the fold)."""
    pytest.importorskip("torch", reason="torch models need the forexd[torch] extra")
    spec = ModelSpec(kind="gru", hyperparameters={"window": 6, "hidden_size": 4, "max_epochs": 1})
    config = WalkForwardConfig(lookback_candles=800, n_folds=2, test_size=100)
    result = _run(data, config, spec=spec)
    assert [100, 100] == [f.labelled_test_rows for f in result.folds]


@pytest.mark.needs_shared
def test_too_little_data_says_rows_needed_and_given(data: Dataset) -> None:
    """The lookback error states both counts."""
    config = WalkForwardConfig(lookback_candles=5000)
    need = data.first_valid + 5000 + data.horizon
    with pytest.raises(InsufficientDataError, match=f"needs {need} rows .* got 1200"):
        _run(data, config)


@pytest.mark.needs_shared
def test_too_little_training_data_for_the_folds(data: Dataset) -> None:
    """Folds that leave the first training set too small are refused."""
    config = WalkForwardConfig(lookback_candles=600, n_folds=5, test_size=100)
    with pytest.raises(InsufficientDataError, match="first fold would train on 94 rows"):
        _run(data, config)


@pytest.mark.needs_shared
def test_constant_series_is_refused(data: Dataset) -> None:
    """A close that never moves is reported before any model is fitted."""
    config = WalkForwardConfig(lookback_candles=800, n_folds=2)
    with pytest.raises(ConstantSeriesError, match="constant"):
        _run(data, config, close=np.full_like(data.close, 1.1))


@pytest.mark.needs_shared
def test_one_class_labels_are_refused(data: Dataset) -> None:
    """Labels of one class over the window cannot be evaluated."""
    y = np.where(np.isfinite(data.y), 1.0, np.nan)
    config = WalkForwardConfig(lookback_candles=800, n_folds=2)
    with pytest.raises(LabelError, match="fewer than two classes"):
        _run(data, config, y=y)


@pytest.mark.needs_shared
def test_nan_after_warmup_names_the_row(data: Dataset) -> None:
    """A hole in the features inside the window is reported with its row."""
    x = data.x.copy()
    x[1000, 3] = np.nan
    config = WalkForwardConfig(lookback_candles=800, n_folds=2)
    with pytest.raises(FeatureError, match="row 1000, column 3"):
        _run(data, config, x=x)


@pytest.mark.needs_shared
def test_labelled_last_row_is_refused_as_lookahead(data: Dataset) -> None:
    """A label on the final row can only have come from the future."""
    y = data.y.copy()
    y[-1] = 1.0
    config = WalkForwardConfig(lookback_candles=800, n_folds=2)
    with pytest.raises(LabelError, match="last row has a label"):
        _run(data, config, y=y)


@pytest.mark.needs_shared
def test_model_failure_names_the_fold_and_kind(data: Dataset) -> None:
    """A fold whose model does not converge fails with the fold and the model kind."""
    spec = ModelSpec(kind="logistic", hyperparameters={"max_iter": 10})
    config = WalkForwardConfig(lookback_candles=800, n_folds=2)
    with pytest.raises(FitError, match=r"walk-forward fold 1/2: logistic: did not converge"):
        _run(data, config, spec=spec)


def test_config_rejects_folds_that_fill_the_lookback() -> None:
    """Test folds that cover the whole lookback leave nothing to train on."""
    with pytest.raises(ValueError, match="leaves no training rows"):
        WalkForwardConfig(lookback_candles=500, n_folds=5, test_size=100)


def test_always_long_on_a_rising_series_earns_the_move_minus_costs() -> None:
    """One round trip: compounded return of the price ratio, less spread and commission."""
    close = np.array([1.0, 1.01, 1.02, 1.03])
    costs = CostModel(spread_pips=2.0, pip_size=PIP, commission_per_million=50.0)
    m = trading_metrics(np.ones(3), close, costs)
    entry = 0.5 * 2 * PIP / 1.0 + 50e-6
    exit_ = 0.5 * 2 * PIP / 1.03 + 50e-6
    gross = np.array([0.01, 0.01 / 1.01, 0.01 / 1.02])
    net = gross - np.array([entry, 0.0, exit_])
    assert np.prod(1 + net) - 1 == pytest.approx(m.total_return, rel=1e-12)
    assert 1 == m.trades
    assert 1.0 == m.exposure
    assert entry + exit_ == pytest.approx(m.costs)
    assert 0.0 == m.max_drawdown


def test_flat_positions_score_zero() -> None:
    """Never trading gives no return, no trades, no drawdown and a Sharpe of 0."""
    m = trading_metrics(np.zeros(5), np.linspace(1.0, 1.5, 6), CostModel(spread_pips=1.0))
    assert (0.0, 0, 0.0, 0.0) == (m.total_return, m.trades, m.max_drawdown, m.sharpe)


def test_drawdown_sharpe_and_trade_count() -> None:
    """Peak-to-trough, annualised Sharpe and openings match hand computation."""
    returns = np.array([0.1, -0.5, 0.2])
    assert 0.5 == pytest.approx(max_drawdown(returns))
    expected = np.mean(returns) / np.std(returns, ddof=1) * np.sqrt(252)
    assert expected == pytest.approx(sharpe_ratio(returns, 252))
    assert 3 == count_trades(np.array([0, 1, 1, -1, 0, 0, -1, -1.0]))


def test_policy_goes_long_short_or_flat_by_threshold() -> None:
    """P(up) and P(down) above their thresholds decide; NaN rows stay flat."""
    proba = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.4, 0.2, 0.4], [np.nan, np.nan, np.nan]])
    classes = np.array([-1, 0, 1])
    positions = positions_from_proba(proba, classes, long_threshold=0.6, short_threshold=0.55)
    np.testing.assert_array_equal([1.0, -1.0, 0.0, 0.0], positions)
    binary = positions_from_proba(
        np.array([[0.3, 0.7]]), np.array([0, 1]), long_threshold=0.5, short_threshold=0.5
    )
    np.testing.assert_array_equal([1.0], binary)


def test_log_loss_matches_scikit_learn() -> None:
    """Our log loss equals sklearn's on the same probabilities."""
    from sklearn.metrics import log_loss as sk_log_loss

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=200)
    y = rng.choice([-1.0, 0.0, 1.0], size=200)
    expected = sk_log_loss(y, proba, labels=[-1, 0, 1])
    assert expected == pytest.approx(log_loss(y, proba, np.array([-1, 0, 1])), rel=1e-12)
