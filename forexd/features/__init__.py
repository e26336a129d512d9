"""Features and labels: pure numpy functions over OHLC arrays (no I/O, no event loop)."""

from __future__ import annotations

from forexd.features.core import (
    Features,
    compute_features,
    compute_features_last,
    first_valid_index,
)
from forexd.features.labels import direction_labels, triple_barrier_labels
from forexd.features.spec import FeatureSpec, MacdSpec

__all__ = [
    "FeatureSpec",
    "Features",
    "MacdSpec",
    "compute_features",
    "compute_features_last",
    "direction_labels",
    "first_valid_index",
    "triple_barrier_labels",
]
