"""Model artifacts: exact round trips, atomic writes, and typed errors for bad files."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from forexd.models import (
    ArtifactError,
    ModelSpec,
    TrainedModel,
    fit_model,
    load_model,
    read_metadata,
    save_model,
)
from tests._fxdata import Dataset, labelled_dataset, one_thread

pytestmark = pytest.mark.needs_shared

SPECS = {
    "logistic": ModelSpec(kind="logistic"),
    "hist_gradient_boosting": ModelSpec(
        kind="hist_gradient_boosting", hyperparameters={"max_iter": 20}
    ),
    "random_forest": ModelSpec(kind="random_forest", hyperparameters={"n_estimators": 10}),
    "mlp": ModelSpec(kind="mlp", hyperparameters={"hidden_sizes": [8], "max_epochs": 2}),
    "gru": ModelSpec(kind="gru", hyperparameters={"window": 5, "hidden_size": 4, "max_epochs": 1}),
}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def data() -> Dataset:
    """1,000 bars of real features and labels."""
    return labelled_dataset(1000)


def _fit(kind: str, d: Dataset) -> TrainedModel:
    if SPECS[kind].uses_torch:
        pytest.importorskip("torch", reason="torch models need the forexd[torch] extra")
    x, y = d.x[d.first_valid : -d.horizon], d.y[d.first_valid : -d.horizon]
    return fit_model(SPECS[kind], x, y, n_jobs=1, seed=5, feature_names=d.names)


@pytest.fixture
def saved(tmp_path: Path, data: Dataset) -> Path:
    """A saved random forest."""
    path = tmp_path / "rf.fxm"
    save_model(_fit("random_forest", data), path)
    return path


@pytest.mark.parametrize("kind", list(SPECS))
def test_round_trip_predicts_identically(kind: str, tmp_path: Path, data: Dataset) -> None:
    """A loaded model gives bit-identical probabilities and keeps spec, classes and names."""
    model = _fit(kind, data)
    model.metadata = {"feature_spec": {"rsi_window": 14}, "symbol": "EURUSD"}
    path = tmp_path / "models" / f"{kind}.fxm"
    save_model(model, path)
    loaded = load_model(path)
    x = data.x[-200:]
    np.testing.assert_array_equal(model.predict_proba(x), loaded.predict_proba(x))
    assert model.spec == loaded.spec
    assert model.classes.tolist() == loaded.classes.tolist()
    assert data.names == loaded.feature_names
    assert {"feature_spec": {"rsi_window": 14}, "symbol": "EURUSD"} == loaded.metadata
    assert kind == read_metadata(path)["spec"]["kind"]


def test_saving_over_a_model_leaves_no_temporary_files(tmp_path: Path, data: Dataset) -> None:
    """The write goes through a temp file that is renamed into place."""
    path = tmp_path / "m.fxm"
    save_model(_fit("logistic", data), path)
    save_model(_fit("random_forest", data), path)
    assert ["m.fxm"] == sorted(p.name for p in tmp_path.iterdir())
    assert "random_forest" == read_metadata(path)["spec"]["kind"]


def test_truncated_artifact_is_an_artifact_error(saved: Path) -> None:
    """A file cut short (crash mid-copy) is reported, not loaded."""
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        load_model(saved)


def test_flipped_byte_is_an_artifact_error(saved: Path) -> None:
    """A corrupted payload byte fails the CRC check instead of loading a wrong model."""
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        load_model(saved)


def test_garbage_and_missing_files_are_artifact_errors(tmp_path: Path) -> None:
    """Random bytes and a missing path both give typed errors."""
    junk = tmp_path / "junk.fxm"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        load_model(junk)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model(tmp_path / "absent.fxm")


def _rewrite(path: Path, meta_change: dict[str, object], payload: bytes | None = None) -> None:
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("meta.json"))
        original = zf.read(meta["payload"])
    meta.update(meta_change)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr(meta["payload"], original if payload is None else payload)
    path.write_bytes(buf.getvalue())


def test_other_format_version_is_an_artifact_error(saved: Path) -> None:
    """An artifact from another format version asks for a retrain."""
    _rewrite(saved, {"format_version": 99})
    with pytest.raises(ArtifactError, match="format version 99"):
        load_model(saved)


def test_untrusted_types_are_refused(tmp_path: Path, data: Dataset) -> None:
    """A payload smuggling a callable (os.getcwd) past the allowlist is not loaded."""
    import skops.io
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.fxm"
    save_model(_fit("logistic", data), path)
    evil = Pipeline([("x", FunctionTransformer(os.getcwd))])
    _rewrite(path, {}, skops.io.dumps(evil))
    with pytest.raises(ArtifactError, match="does not trust"):
        load_model(path)


def test_payload_of_another_kind_is_refused(tmp_path: Path, data: Dataset) -> None:
    """A forest payload under a logistic spec is reported as a mismatch."""
    forest = tmp_path / "rf.fxm"
    save_model(_fit("random_forest", data), forest)
    with zipfile.ZipFile(forest) as zf:
        payload = zf.read("model.skops")
    path = tmp_path / "lr.fxm"
    save_model(_fit("logistic", data), path)
    _rewrite(path, {}, payload)
    with pytest.raises(ArtifactError, match="spec says logistic"):
        load_model(path)


def test_torch_weights_that_do_not_fit_the_spec_are_refused(tmp_path: Path, data: Dataset) -> None:
    """Weights saved for another architecture fail with a typed error."""
    path = tmp_path / "mlp.fxm"
    save_model(_fit("mlp", data), path)
    _rewrite(path, {"spec": {"kind": "mlp", "hyperparameters": {"hidden_sizes": [3]}}})
    with pytest.raises(ArtifactError, match="do not load into a mlp"):
        load_model(path)
