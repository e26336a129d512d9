"""``fit_model``: train any model kind on a feature matrix and labels.

Threads: the random forest uses exactly the ``n_jobs`` it is given. Logistic regression
(lbfgs) and histogram gradient boosting do not take a thread count: their BLAS/OpenMP
threads are bounded by the process-wide ``threadpoolctl`` caps that the runtime sets once
from the compute budget (``blas_threads``). Torch models likewise run under the runtime's
``torch.set_num_threads``. Nothing here changes process-wide settings.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.models.device import choose_device
from forexd.models.errors import FitError, LabelError, ModelError
from forexd.models.spec import (
    HistGradientBoostingParams,
    LogisticParams,
    ModelSpec,
    RandomForestParams,
)
from forexd.models.trained import SklearnModel, TrainedModel, check_matrix


def _labels(y: FloatArray, n_rows: int, kind: str) -> tuple[IntArray, IntArray]:
    """Class values and a class index per row (``-1`` where the label is NaN)."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise LabelError(
            f"{kind}: labels have shape {arr.shape}, features have {n_rows} rows; "
            "pass one label per feature row"
        )
    known = np.isfinite(arr)
    values = arr[known]
    if not np.array_equal(values, np.round(values)):
        raise LabelError(f"{kind}: labels must be whole class values (-1, 0, 1 or 0, 1)")
    classes = np.unique(values).astype(np.int64)
    if len(classes) < 2:
        seen = "no labelled rows" if len(classes) == 0 else f"only class {classes[0]:+d}"
        raise LabelError(
            f"{kind}: the training labels hold {seen}; a classifier needs two classes "
            "(widen the window, or narrow the dead band / barriers)"
        )
    index = np.full(n_rows, -1, dtype=np.int64)
    index[known] = np.searchsorted(classes, values.astype(np.int64))
    return classes, index


def sklearn_estimator(spec: ModelSpec, n_jobs: int, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    p = spec.params
    if isinstance(p, LogisticParams):
        logistic = LogisticRegression(
            C=p.c, max_iter=p.max_iter, class_weight=p.class_weight, random_state=seed
        )
        return Pipeline([("scale", StandardScaler()), ("logistic", logistic)])
    if isinstance(p, HistGradientBoostingParams):
        return HistGradientBoostingClassifier(
            learning_rate=p.learning_rate,
            max_iter=p.max_iter,
            max_leaf_nodes=p.max_leaf_nodes,
            max_depth=p.max_depth,
            min_samples_leaf=p.min_samples_leaf,
            l2_regularization=p.l2_regularization,
            early_stopping=p.early_stopping,
            validation_fraction=p.validation_fraction,
            n_iter_no_change=p.n_iter_no_change,
            class_weight=p.class_weight,
            random_state=seed,
        )
    if isinstance(p, RandomForestParams):
        return RandomForestClassifier(
            n_estimators=p.n_estimators,
            max_depth=p.max_depth,
            min_samples_leaf=p.min_samples_leaf,
            max_features=p.max_features,
            class_weight=p.class_weight,
            n_jobs=n_jobs,
            random_state=seed,
        )
    raise ValueError(f"{spec.kind} is not a scikit-learn model kind")


def _fit_hgb(
    estimator: Any, p: HistGradientBoostingParams, x: FloatArray, y: IntArray
) -> dict[str, Any]:
    """Fit boosting, early-stopping on the chronological tail where sklearn allows it.

    sklearn's own validation split is a random sample, which on time series lets early
    stopping peek at bars interleaved with the training bars. From scikit-learn 1.7 ``fit``
    takes ``X_val``/``y_val``; older versions fall back to the random split.
    """
    n_val = round(len(y) * p.validation_fraction)
    head, tail = y[:-n_val], y[-n_val:]
    takes_val = "X_val" in inspect.signature(estimator.fit).parameters
    usable = (
        p.early_stopping
        and takes_val
        and n_val > 0
        and set(tail) <= set(head)
        and len(set(head)) > 1
    )
    if usable:
        estimator.fit(x[:-n_val], head, X_val=x[-n_val:], y_val=tail)
        return {"validation": "chronological tail", "rows": len(head), "validation_rows": n_val}
    estimator.fit(x, y)
    split = "random (sklearn)" if p.early_stopping else "none"
    return {"validation": split, "rows": len(y)}


def _fit_sklearn(
    spec: ModelSpec,
    x: FloatArray,
    y: IntArray,
    classes: IntArray,
    *,
    n_jobs: int,
    seed: int,
    feature_names: list[str] | None,
) -> SklearnModel:
    estimator = sklearn_estimator(spec, n_jobs, seed)
    started = time.perf_counter()
    p = spec.params
    if isinstance(p, HistGradientBoostingParams):
        info = _fit_hgb(estimator, p, x, y)
        info["iterations"] = int(estimator.n_iter_)
    else:
        estimator.fit(x, y)
        info = {"rows": len(y)}
    if isinstance(p, LogisticParams):
        n_iter = int(np.max(estimator[-1].n_iter_))
        if n_iter >= p.max_iter:
            raise FitError(
                f"logistic: did not converge in {p.max_iter} iterations; raise "
                "hyperparameters.max_iter or lower hyperparameters.c"
            )
        info["iterations"] = n_iter
    info["fit_seconds"] = time.perf_counter() - started
    return SklearnModel(spec, estimator, classes, x.shape[1], feature_names, info)


def fit_model(
    spec: ModelSpec,
    x: FloatArray,
    y: FloatArray,
    *,
    n_jobs: int,
    seed: int,
    device: str = "cpu",
    feature_names: list[str] | None = None,
) -> TrainedModel:
    """Train a classifier.

    Rows whose label is NaN are not training targets (a GRU still reads them as context).
    Rows are assumed to be in time order: torch models and boosting validate on the tail.

    Args:
        spec: model kind and hyperparameters.
        x: finite float features ``[n, F]`` (drop the warm-up rows first).
        y: labels ``[n]``: whole class values (-1/0/+1 or 0/1), NaN for "no label".
        n_jobs: threads for the random forest (>= 1; never -1, which means "all cores").
        seed: seeds every random choice of the fit.
        device: torch models only: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        feature_names: stored with the model, for artifacts and reports.

    Returns:
        The trained model; ``info["fit_seconds"]`` says how long the fit took.

    Raises:
        FeatureError: ``x`` is not a finite 2-D matrix.
        LabelError: labels misaligned, not whole numbers, or of fewer than two classes.
        TorchUnavailableError: a torch kind without torch installed.
        InsufficientDataError: too few rows for the model.
        FitError: the estimator raised, diverged or did not converge (names the kind).
        ModelError: ``n_jobs`` below 1 or a bad device.
    """
    if spec.is_rl:
        raise ModelError(
            f"{spec.kind} is an RL agent: it trains on bars in the backtest environment, not "
            "on labels; use forexd.rl.trainer (forexd train --model recurrent_ppo)"
        )
    if n_jobs < 1:
        raise ModelError(f"{spec.kind}: n_jobs must be >= 1 (a bounded thread count), got {n_jobs}")
    arr = check_matrix(x, None, f"{spec.kind} fit")
    if feature_names is not None and len(feature_names) != arr.shape[1]:
        raise ModelError(
            f"{spec.kind}: {len(feature_names)} feature names for {arr.shape[1]} columns"
        )
    classes, index = _labels(y, len(arr), spec.kind)
    try:
        if spec.uses_torch:
            from forexd.models.torch_models import fit_torch

            return fit_torch(
                spec,
                arr,
                index,
                classes,
                seed=seed,
                device=choose_device(device),
                feature_names=feature_names,
            )
        known = index >= 0
        return _fit_sklearn(
            spec,
            arr[known],
            classes[index[known]],
            classes,
            n_jobs=n_jobs,
            seed=seed,
            feature_names=feature_names,
        )
    except ModelError:
        raise
    except Exception as exc:  # any estimator failure becomes one typed error naming the kind
        raise FitError(f"{spec.kind}: training failed: {type(exc).__name__}: {exc}") from exc
