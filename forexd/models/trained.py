"""A trained classifier: what :func:`forexd.models.fit_model` returns and artifacts store.

Probabilities come back as a float64 ``[n, len(classes)]`` matrix whose columns follow
``classes`` (the label values seen in training, ascending: ``[-1, 0, 1]`` or ``[0, 1]``).
Sequence models (``gru``) need ``context_rows`` earlier rows before they can predict a row;
their first ``context_rows`` output rows are NaN, so callers pass that much history in front
of the rows they want.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.models.errors import FeatureError
from forexd.models.spec import ModelSpec

Backend = Literal["sklearn", "torch", "rl"]


def check_matrix(x: FloatArray, n_features: int | None, what: str) -> FloatArray:
    """Return ``x`` as a C-contiguous float64 matrix, or raise if it cannot be used.

    Raises:
        FeatureError: not 2-D, the wrong number of columns, or NaN/inf values.
    """
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise FeatureError(f"{what}: features must be a 2-D matrix, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise FeatureError(
            f"{what}: the model was trained on {n_features} feature columns, got {arr.shape[1]}; "
            "compute features with the model's own FeatureSpec"
        )
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        raise FeatureError(
            f"{what}: {len(bad)} feature rows hold NaN/inf (first: row {bad[0]}); "
            "drop the warm-up rows (first_valid_index) before predicting"
        )
    return arr


class TrainedModel(abc.ABC):
    """A fitted classifier with its spec, class labels and training information.

    Attributes:
        spec: what was trained.
        classes: label values, ascending; the columns of :meth:`predict_proba`.
        n_features: feature columns expected.
        feature_names: names of those columns, when the trainer passed them.
        info: facts about the fit (seconds, epochs, rows), JSON-serialisable.
        metadata: the caller's JSON-serialisable notes saved with the model (feature spec,
            label definition, data range...); empty unless set.
    """

    backend: ClassVar[Backend]

    def __init__(
        self,
        spec: ModelSpec,
        classes: IntArray,
        n_features: int,
        feature_names: list[str] | None,
        info: dict[str, Any],
    ) -> None:
        self.spec = spec
        self.classes = np.asarray(classes, dtype=np.int64)
        self.n_features = n_features
        self.feature_names = feature_names
        self.info = info
        self.metadata: dict[str, Any] = {}

    @property
    def context_rows(self) -> int:
        """Earlier rows a prediction needs besides its own (0 for row-wise models)."""
        return 0

    def predict_proba(self, x: FloatArray) -> FloatArray:
        """Class probabilities, one row per feature row; columns follow :attr:`classes`.

        Raises:
            FeatureError: wrong shape or NaN/inf in ``x``.
        """
        arr = check_matrix(x, self.n_features, f"{self.spec.kind} predict")
        return self._predict_proba(arr)

    def predict(self, x: FloatArray) -> FloatArray:
        """Most probable class value per row (NaN where no prediction exists)."""
        proba = self.predict_proba(x)
        out = np.full(len(proba), np.nan)
        ok = np.isfinite(proba).all(axis=1)
        out[ok] = self.classes[np.argmax(proba[ok], axis=1)]
        return out

    def set_n_jobs(self, n_jobs: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Threads used by :meth:`predict_proba` where the estimator has such a setting."""

    @abc.abstractmethod
    def _predict_proba(self, x: FloatArray) -> FloatArray:
        """Probabilities for a validated matrix."""


class SklearnModel(TrainedModel):
    """A fitted scikit-learn estimator (or pipeline) with ``predict_proba``."""

    backend: ClassVar[Backend] = "sklearn"

    def __init__(
        self,
        spec: ModelSpec,
        estimator: Any,
        classes: IntArray,
        n_features: int,
        feature_names: list[str] | None,
        info: dict[str, Any],
    ) -> None:
        super().__init__(spec, classes, n_features, feature_names, info)
        self.estimator = estimator

    def set_n_jobs(self, n_jobs: int) -> None:
        """Set ``n_jobs`` on estimators that have it (the random forest)."""
        if n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
        if "n_jobs" in self.estimator.get_params():
            self.estimator.set_params(n_jobs=n_jobs)

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        proba: FloatArray = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
        return proba
