"""Walk-forward folds, out-of-sample scores, trading metrics and the errors users can hit."""

# STYLE.md asks for asserts that read `expected == actual`; SIM300 calls that a Yoda condition.

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from forexd.models import (
    ConstantSeriesError,
    InsufficientDataError,
    ModelSpec,
    WalkForwardConfig,
    walk_forward,
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


def _run(d: Dataset, config: WalkForwardConfig, spec: ModelSpec = LOGISTIC, **kw: object):  # type: ignore[no-untyped-def]
    return walk_forward(
        spec, d.x, d.y, d.close, pip_size=PIP, config=config, n_jobs=1, seed=0, **kw  # type: ignore[arg-type]
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
    spec = ModelSpec(
        kind="gru", hyperparameters={"window": 6, "hidden_size": 4, "max_epochs": 1}
    )
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
    flat = Dataset(data.x, data.y, np.full_like(data.close, 1.1), *vars(data).values().__iter__().__class__(list(vars(data).values())[3:]))  # noqa: E501
    del flat
    close = np.full_like(data.close, 1.1)
    config = WalkForwardConfig(lookback_candles=800, n_folds=2)
    with pytest.raises(ConstantSeriesError, match="constant"):
        walk_forward(
            LOGISTIC, data.x, data.y, close, pip_size=PIP, config=config, n_jobs=1, seed=0
        )
