"""The synchronous training cycle: walk-forward, final fit, champion/challenger verdict."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import ValidationError

from forexd.models.errors import (
    ConstantSeriesError,
    InsufficientDataError,
    LabelError,
    TorchUnavailableError,
)
from forexd.models.fit import fit_model
from forexd.models.promotion import (
    MIN_COMPARE_ROWS,
    Champion,
    promotion_decision,
)
from forexd.models.trainconfig import Candles, DirectionLabel, TrainConfig, make_labels
from forexd.models.trainer import train_challenger
from forexd.strategies.ml_params import MlParams
from tests._fxdata import one_thread
from tests._mlsupport import SMALL_WF, bundled_candles

PIP = 0.0001


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


def _config(**kw: object) -> TrainConfig:
    return TrainConfig(lookback_candles=800, walk_forward=SMALL_WF, **kw)  # type: ignore[arg-type]


def test_cycle_scores_every_fold_and_records_its_data_range() -> None:
    """A cycle evaluates each fold out of sample and fits the final model on the latest rows."""
    candles = bundled_candles(1000)
    config = _config()
    result = train_challenger(candles, config, pip_size=PIP, n_jobs=1)
    assert 3 == len(result.walk_forward.folds)
    assert all(math.isfinite(f.log_loss) for f in result.walk_forward.folds)
    assert 800 == result.candles
    assert int(candles.ts[-1 - config.label.horizon]) == result.data_to_ts
    assert result.data_from_ts < result.data_to_ts
    assert result.comparison.promote
    assert "no champion yet" == result.comparison.reason
    metrics = result.metrics()
    assert {"oos_log_loss", "oos_sharpe", "walk_forward", "comparison"} <= set(metrics)
    assert 3 == len(metrics["walk_forward"]["folds"])
    assert config.features.names == result.model.feature_names
    assert result.data_to_ts == result.model.metadata["data_to_ts"]


def test_same_data_and_seed_give_the_same_challenger() -> None:
    """Two cycles over the same candles produce identical probabilities."""
    candles = bundled_candles(900)
    a = train_challenger(candles, _config(), pip_size=PIP, n_jobs=1)
    b = train_challenger(candles, _config(), pip_size=PIP, n_jobs=1)
    x = np.random.default_rng(1).normal(size=(5, a.model.n_features))
    np.testing.assert_array_equal(a.model.predict_proba(x), b.model.predict_proba(x))


def test_no_champion_promotes_the_challenger() -> None:
    """Without a champion the challenger always wins."""
    assert (True, "no champion yet") == promotion_decision(None, 1.2, margin=0.5, rows=0)


@pytest.mark.parametrize(
    ("champion", "challenger", "margin", "expected"),
    [
        (1.00, 0.90, 0.05, True),  # gains 0.10 >= 0.05
        (1.00, 0.97, 0.05, False),  # gains 0.03 < 0.05
        (1.00, 1.00, 0.0, True),  # a tie goes to the fresher model
        (1.00, 1.00, 0.01, False),  # a positive margin keeps the champion on a tie
        (1.00, 1.02, -0.05, True),  # a negative margin tolerates a slightly worse score
        (math.inf, 1.0, 0.0, True),  # a champion that cannot score loses
        (1.0, math.nan, 0.0, False),  # a challenger that cannot score loses
    ],
)
def test_challenger_replaces_champion_only_by_the_margin(
    champion: float, challenger: float, margin: float, expected: bool
) -> None:
    """The verdict compares log losses with the promote margin."""
    promote, reason = promotion_decision(champion, challenger, margin=margin, rows=100)
    assert expected == promote
    assert reason


def test_too_few_fresh_bars_keep_the_champion() -> None:
    """Fewer labelled bars than MIN_COMPARE_ROWS since the champion's data: no promotion."""
    promote, reason = promotion_decision(2.0, 0.1, margin=0.0, rows=MIN_COMPARE_ROWS - 1)
    assert not promote
    assert f"only {MIN_COMPARE_ROWS - 1} labelled bars" in reason


def _champion_on(candles: Candles, config: TrainConfig) -> Champion:
    result = train_challenger(candles, config, pip_size=PIP, n_jobs=1)
    return Champion.from_model(result.model, "champ")


def _wrong_champion(candles: Candles, config: TrainConfig, fresh_bars: int) -> Champion:
    """A champion that memorised a wrong label for every bar, the latest ones included, but
    claims its data ended ``fresh_bars`` ago: confidently wrong on the fresh window."""
    from forexd.features import compute_features

    x = compute_features(
        candles.open, candles.high, candles.low, candles.close, candles.ts, config.features
    ).matrix
    y = make_labels(config.label, candles.high, candles.low, candles.close, PIP)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    wrong = np.where(y == 1, -1.0, np.where(y == -1, 0.0, 1.0))  # every label rotated
    spec = {"kind": "random_forest", "hyperparameters": {"max_depth": None, "min_samples_leaf": 1}}
    model = fit_model(
        TrainConfig(model=spec).model, x[keep], wrong[keep], n_jobs=1, seed=0,
        feature_names=config.features.names,
    )  # fmt: skip
    model.metadata = {
        "features": config.features.model_dump(mode="json"),
        "data_to_ts": int(candles.ts[-fresh_bars]),
    }
    return Champion.from_model(model, "wrong")


def test_champion_that_saw_every_bar_is_kept() -> None:
    """A champion trained on the same bars leaves no fresh window: it stays."""
    candles = bundled_candles(1000)
    config = _config()
    champion = _champion_on(candles, config)
    result = train_challenger(candles, config, pip_size=PIP, n_jobs=1, champion=champion)
    assert not result.comparison.promote
    assert 0 == result.comparison.rows
    assert "champ" == result.comparison.champion_id


def test_worse_champion_is_replaced_on_the_fresh_window() -> None:
    """A champion that is confidently wrong loses on the bars after its training data."""
    config = _config()
    data = bundled_candles(1000, end=3200)
    champion = _wrong_champion(data, config, fresh_bars=200)
    verdict = train_challenger(data, config, pip_size=PIP, n_jobs=1, champion=champion).comparison
    assert verdict.promote, verdict.reason
    assert verdict.rows >= MIN_COMPARE_ROWS
    assert verdict.champion_log_loss is not None and verdict.challenger_log_loss is not None
    assert verdict.champion_log_loss > verdict.challenger_log_loss
    assert verdict.window_from is not None and verdict.window_from > "2017"


def test_large_margin_keeps_a_worse_champion() -> None:
    """With a margin no challenger can reach, the champion stays and the losses are kept."""
    config = _config(promote_margin=1.0)
    champion = _champion_on(bundled_candles(1000, end=3000), config)
    result = train_challenger(
        bundled_candles(1000, end=3200), config, pip_size=PIP, n_jobs=1, champion=champion
    )
    assert not result.comparison.promote
    assert result.comparison.champion_log_loss is not None


def test_comparison_scores_the_champion_with_its_own_features() -> None:
    """A champion trained on other feature columns is still scored (on its own columns)."""
    narrow = _config(features={"return_horizons": (1, 2), "volatility_windows": (12,)})
    champion = _champion_on(bundled_candles(1000, end=3000), narrow)
    wide = _config()
    data = bundled_candles(1000, end=3200)
    verdict = train_challenger(data, wide, pip_size=PIP, n_jobs=1, champion=champion).comparison
    assert verdict.champion_log_loss is not None and math.isfinite(verdict.champion_log_loss)


def test_stop_request_abandons_the_cycle_after_a_fold() -> None:
    """A stop check that raises ends the cycle at the next fold boundary."""
    calls: list[int] = []

    class StopError(Exception):
        """Stops the cycle."""

    def stop() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise StopError

    with pytest.raises(StopError):
        train_challenger(bundled_candles(900), _config(), pip_size=PIP, n_jobs=1, stop=stop)
    assert 3 == len(calls)


def test_too_little_data_says_how_many_candles_are_needed_and_given() -> None:
    """Fewer candles than the lookback is a typed error naming both numbers."""
    with pytest.raises(InsufficientDataError, match=r"lookback_candles = 800 candles, got 500"):
        train_challenger(bundled_candles(500), _config(), pip_size=PIP, n_jobs=1)


def test_lookback_below_the_minimum_is_rejected_with_the_minimum() -> None:
    """A lookback that cannot hold the folds fails validation and says what is needed."""
    with pytest.raises(ValidationError, match=r"needs at least \d+ candles"):
        TrainConfig(lookback_candles=150)


def test_constant_series_is_a_constant_series_error() -> None:
    """A close that never moves cannot be learned."""
    n = 800
    flat = np.full(n, 1.1)
    ts = bundled_candles(n).ts
    candles = Candles(ts, flat, flat + 0.0001, flat - 0.0001, flat)
    with pytest.raises(ConstantSeriesError, match="constant"):
        train_challenger(candles, _config(), pip_size=PIP, n_jobs=1)


def test_one_class_labels_are_a_label_error() -> None:
    """A dead band wider than any move leaves one class: a typed error, not a crash."""
    config = _config(label=DirectionLabel(dead_band_pips=10_000))
    with pytest.raises(LabelError, match="fewer than two classes"):
        train_challenger(bundled_candles(900), config, pip_size=PIP, n_jobs=1)


def test_torch_model_without_torch_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An mlp/gru strategy without torch fails at config load with the pip command."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(ValidationError, match=r"pip install 'forexd\[torch\]'"):
        MlParams(model={"kind": "mlp"})


def test_torch_fit_without_torch_is_a_torch_unavailable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Training a torch kind where torch cannot be imported raises the typed error."""
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    config = _config(model={"kind": "mlp", "hyperparameters": {"max_epochs": 1}})
    with pytest.raises(TorchUnavailableError, match="forexd\\[torch\\]"):
        train_challenger(bundled_candles(900), config, pip_size=PIP, n_jobs=1)
