"""fit_model and TrainedModel: every kind trains on real features; bad inputs fail clearly."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import ValidationError

from forexd.errors import ConfigError
from forexd.models import (
    MODEL_KINDS,
    FeatureError,
    FitError,
    LabelError,
    ModelError,
    ModelSpec,
    TorchUnavailableError,
    build_model_spec,
    choose_device,
    fit_model,
)
from forexd.models.spec import RL_KINDS
from tests._fxdata import Dataset, labelled_dataset, one_thread

pytestmark = pytest.mark.needs_shared

SMALL = {
    "logistic": {},
    "hist_gradient_boosting": {"max_iter": 30},
    "random_forest": {"n_estimators": 20, "max_depth": 5},
    "mlp": {"hidden_sizes": [16], "max_epochs": 4, "batch_size": 128},
    "gru": {"window": 8, "hidden_size": 8, "max_epochs": 2, "batch_size": 128},
}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def data() -> Dataset:
    """1,200 bars of features and labels."""
    return labelled_dataset(1200)


def _train_rows(d: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return d.x[d.first_valid : -d.horizon], d.y[d.first_valid : -d.horizon]


def _needs(kind: str) -> None:
    if ModelSpec(kind=kind).uses_torch:
        pytest.importorskip("torch", reason="torch models need the forexd[torch] extra")


# RL kinds train on bars, not labels: tests/test_rl.py covers them.
@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if k not in RL_KINDS])
def test_every_kind_predicts_probabilities_per_class(kind: str, data: Dataset) -> None:
    """Each kind gives one probability row per feature row, summing to one."""
    _needs(kind)
    x, y = _train_rows(data)
    model = fit_model(ModelSpec(kind=kind, hyperparameters=SMALL[kind]), x, y, n_jobs=1, seed=3)
    proba = model.predict_proba(x[-100:])
    assert [-1, 0, 1] == model.classes.tolist()
    assert (100, 3) == proba.shape
    ctx = model.context_rows
    np.testing.assert_allclose(np.ones(100 - ctx), proba[ctx:].sum(axis=1), rtol=1e-6)
    assert model.info["fit_seconds"] > 0


@pytest.mark.parametrize("kind", ["random_forest", "mlp", "gru"])
def test_same_seed_gives_same_model(kind: str, data: Dataset) -> None:
    """Two fits with one seed predict identically (no global random state involved)."""
    _needs(kind)
    x, y = _train_rows(data)
    spec = ModelSpec(kind=kind, hyperparameters=SMALL[kind])
    first = fit_model(spec, x, y, n_jobs=1, seed=11).predict_proba(x[-50:])
    second = fit_model(spec, x, y, n_jobs=1, seed=11).predict_proba(x[-50:])
    np.testing.assert_array_equal(first, second)


def test_gru_needs_window_minus_one_rows_of_context(data: Dataset) -> None:
    """A GRU cannot predict its first window - 1 rows; those come back NaN."""
    _needs("gru")
    x, y = _train_rows(data)
    model = fit_model(ModelSpec(kind="gru", hyperparameters=SMALL["gru"]), x, y, n_jobs=1, seed=0)
    proba = model.predict_proba(x[:20])
    assert 7 == model.context_rows
    assert np.isnan(proba[:7]).all()
    assert np.isfinite(proba[7:]).all()


def test_torch_early_stopping_stays_within_the_epoch_budget(data: Dataset) -> None:
    """Training stops at max_epochs at the latest and keeps the best epoch's weights."""
    _needs("mlp")
    x, y = _train_rows(data)
    spec = ModelSpec(kind="mlp", hyperparameters={"hidden_sizes": [8], "max_epochs": 3})
    info = fit_model(spec, x, y, n_jobs=1, seed=0).info
    assert info["epochs"] <= 3
    assert 1 <= info["best_epoch"] <= info["epochs"]


def test_nan_labels_are_not_training_targets(data: Dataset) -> None:
    """Rows with NaN labels (dead band of binary labels) are skipped, not treated as a class."""
    x, y = _train_rows(data)
    binary = np.where(y == 0, np.nan, np.where(y > 0, 1.0, 0.0))
    model = fit_model(ModelSpec(kind="logistic"), x, binary, n_jobs=1, seed=0)
    assert [0, 1] == model.classes.tolist()
    assert int(np.isfinite(binary).sum()) == model.info["rows"]


def test_spec_fills_defaults_and_rejects_unknown_hyperparameters() -> None:
    """Hyperparameters are validated per kind; the stored dict has every default."""
    spec = ModelSpec(kind="random_forest", hyperparameters={"n_estimators": 7})
    assert 7 == spec.hyperparameters["n_estimators"]
    assert 8 == spec.hyperparameters["max_depth"]
    with pytest.raises(ValidationError, match="hidden_sizes"):
        ModelSpec(kind="gru", hyperparameters={"hidden_sizes": [4]})
    with pytest.raises(ValidationError, match="learning_rate"):
        ModelSpec(kind="hist_gradient_boosting", hyperparameters={"learning_rate": 0})


def test_build_model_spec_names_the_config_key() -> None:
    """A bad spec from the config is a ConfigError naming where it came from."""
    with pytest.raises(ConfigError, match=r"symbols\[0\]\.model"):
        build_model_spec({"kind": "xgboost"}, where="symbols[0].model")


def test_one_class_labels_are_a_label_error(data: Dataset) -> None:
    """Labels of a single class cannot train a classifier."""
    x, _ = _train_rows(data)
    with pytest.raises(LabelError, match=r"only class \+1"):
        fit_model(ModelSpec(kind="logistic"), x, np.ones(len(x)), n_jobs=1, seed=0)


def test_nan_features_are_a_feature_error(data: Dataset) -> None:
    """Warm-up rows passed to fit are reported with their row."""
    with pytest.raises(FeatureError, match="row 0"):
        fit_model(ModelSpec(kind="logistic"), data.x, data.y, n_jobs=1, seed=0)


def test_wrong_column_count_at_predict_is_a_feature_error(data: Dataset) -> None:
    """Predicting with another feature layout fails instead of returning nonsense."""
    x, y = _train_rows(data)
    model = fit_model(ModelSpec(kind="logistic"), x, y, n_jobs=1, seed=0)
    with pytest.raises(FeatureError, match="trained on 20 feature columns, got 19"):
        model.predict_proba(x[:5, :-1])


def test_unconverged_logistic_is_a_fit_error(data: Dataset) -> None:
    """Hitting max_iter is reported as a failure to converge, naming the kind."""
    x, y = _train_rows(data)
    spec = ModelSpec(kind="logistic", hyperparameters={"max_iter": 10})
    with pytest.raises(FitError, match="logistic: did not converge in 10 iterations"):
        fit_model(spec, x, y, n_jobs=1, seed=0)


def test_estimator_exception_becomes_fit_error_naming_the_kind(data: Dataset) -> None:
    """sklearn's own error (float32 overflow in the forest) is wrapped with the kind."""
    x, y = _train_rows(data)
    huge = x.copy()
    huge[0, 0] = 1e300  # finite in float64, infinite in the forest's float32
    spec = ModelSpec(kind="random_forest", hyperparameters=SMALL["random_forest"])
    with pytest.raises(FitError, match="random_forest: training failed: ValueError"):
        fit_model(spec, huge, y, n_jobs=1, seed=0)


def test_unbounded_thread_count_is_rejected(data: Dataset) -> None:
    """n_jobs=-1 ("all cores") is refused: threads come from the compute budget."""
    x, y = _train_rows(data)
    with pytest.raises(ModelError, match="n_jobs must be >= 1"):
        fit_model(ModelSpec(kind="random_forest"), x, y, n_jobs=-1, seed=0)


def test_choose_device_falls_back_to_cpu_and_rejects_unknown_names() -> None:
    """auto picks CUDA only when present; a made-up device name is an error."""
    torch = pytest.importorskip("torch")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert expected == choose_device("auto")
    assert "cpu" == choose_device("cpu")
    with pytest.raises(ModelError, match="not one of"):
        choose_device("tpu")


def test_torch_kind_without_torch_says_how_to_install(
    data: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With torch not importable, asking for an MLP names the extra to install."""
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    x, y = _train_rows(data)
    with pytest.raises(TorchUnavailableError, match=r"pip install 'forexd\[torch\]'"):
        fit_model(ModelSpec(kind="mlp"), x, y, n_jobs=1, seed=0)


def test_fit_model_refuses_an_rl_kind_and_names_the_rl_trainer(data: Dataset) -> None:
    """recurrent_ppo does not train on labels; fit_model says where it trains instead."""
    x, y = _train_rows(data)
    with pytest.raises(ModelError, match="recurrent_ppo"):
        fit_model(ModelSpec(kind="recurrent_ppo"), x, y, n_jobs=1, seed=0)


def test_scikit_learn_kinds_never_import_torch_whatever_the_device() -> None:
    """Fitting every non-torch kind with device="auto" leaves torch unimported (no stall)."""
    import subprocess
    import sys

    probe = (
        "import sys, numpy as np\n"
        "from forexd.models.fit import fit_model\n"
        "from forexd.models.spec import MODEL_KINDS, RL_KINDS, TORCH_KINDS, ModelSpec\n"
        "x = np.random.default_rng(0).normal(size=(200, 3)); y = np.sign(x[:, 0])\n"
        "for kind in sorted(set(MODEL_KINDS) - TORCH_KINDS - RL_KINDS):\n"
        "    fit_model(ModelSpec(kind=kind), x, y, device='auto', n_jobs=1, seed=0)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "False" == done.stdout.strip().splitlines()[-1]


def test_device_is_resolved_once_per_name() -> None:
    """A second choose_device call answers from the first resolution."""
    choose_device.cache_clear()
    first = choose_device("auto")
    assert first == choose_device("auto")
    assert 1 == choose_device.cache_info().hits
