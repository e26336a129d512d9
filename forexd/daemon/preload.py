"""The learning stack imported before the actors start (an ``ml`` daemon's start-up)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forexd.models.spec import ModelSpec


def preload_training_stack(specs: list[ModelSpec]) -> int:
    """Import what the first training cycle of these model kinds would import (blocking).

    The learning libraries load lazily, so on a fresh start the first cycle brings in
    ~2,000 modules (sklearn, scipy, joblib, skops; torch for the torch kinds) after the
    supervisor's start-up ``gc.freeze()``; every full collection then scans them until the
    cleanup freezes them (~130 ms of loop lag per pass, docs/benchmarks.md). Imported here,
    before the freeze, they never enter the collector's scans. And imported before the
    actors start: two threads importing sklearn at once (one symbol restoring its champion,
    another training) can fail with "partially initialized module" (seen: one start in ~8).

    Returns:
        How many modules were loaded.
    """
    before = len(sys.modules)
    import skops.io  # noqa: F401 - the artifact format's loader (pulls sklearn's registry)

    import forexd.daemon.trainjob  # noqa: F401 - the job, the cycle, the artifacts
    from forexd.models import fit

    for spec in specs:
        if spec.uses_torch:
            import torch  # noqa: F401

            if spec.is_rl:
                import sb3_contrib  # noqa: F401
        else:
            fit.sklearn_estimator(spec, n_jobs=1, seed=0)  # imports its estimator's modules
    return len(sys.modules) - before
