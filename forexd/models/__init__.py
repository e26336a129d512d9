"""Learning: model specs, fitting, walk-forward evaluation and artifacts.

Synchronous code; the runtime calls it in its bounded compute pool. scikit-learn, skops and
torch are imported inside the functions that need them, so importing this package is cheap
and works without the ``torch`` extra.
"""

from __future__ import annotations

from forexd.models.artifacts import load_model, read_metadata, save_model
from forexd.models.device import choose_device
from forexd.models.errors import (
    ArtifactError,
    ConstantSeriesError,
    FeatureError,
    FitError,
    InsufficientDataError,
    LabelError,
    ModelError,
    TorchUnavailableError,
)
from forexd.models.fit import fit_model
from forexd.models.metrics import CostModel, TradingMetrics, trading_metrics
from forexd.models.spec import MODEL_KINDS, ModelKind, ModelSpec, build_model_spec
from forexd.models.trained import TrainedModel
from forexd.models.walkforward import (
    FoldResult,
    ProgressCallback,
    WalkForwardConfig,
    WalkForwardResult,
    walk_forward,
)

__all__ = [
    "MODEL_KINDS",
    "ArtifactError",
    "ConstantSeriesError",
    "CostModel",
    "FeatureError",
    "FitError",
    "FoldResult",
    "InsufficientDataError",
    "LabelError",
    "ModelError",
    "ModelKind",
    "ModelSpec",
    "ProgressCallback",
    "TorchUnavailableError",
    "TradingMetrics",
    "TrainedModel",
    "WalkForwardConfig",
    "WalkForwardResult",
    "build_model_spec",
    "choose_device",
    "fit_model",
    "load_model",
    "read_metadata",
    "save_model",
    "trading_metrics",
    "walk_forward",
]
