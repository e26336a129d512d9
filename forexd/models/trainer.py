"""One training cycle, synchronously: features → labels → walk-forward → final fit → verdict.

The runtime (:class:`~forexd.daemon.trainer.ModelTrainer`) runs :func:`train_challenger` in its
compute pool; ``forexd train`` runs the same code offline. Nothing here touches the event
loop, the registry or process-wide settings. The champion/challenger rule is in
:mod:`forexd.models.promotion`.

Cancellation: a worker thread cannot be killed, so the cycle cooperates: ``stop()`` is
called between phases and after every walk-forward fold, and raises once the runtime has
given up on the job (timeout or shutdown); an abandoned cycle then ends at the next fold
instead of running to completion in the background.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forexd.features import compute_features
from forexd.models.errors import InsufficientDataError, ModelError
from forexd.models.fit import fit_model
from forexd.models.metrics import H1_PERIODS_PER_YEAR
from forexd.models.promotion import Champion, Comparison, compare_with_champion
from forexd.models.trainconfig import (
    MIN_WALK_FORWARD_ROWS,
    Candles,
    TrainConfig,
    make_labels,
    training_rows,
)
from forexd.models.trained import TrainedModel
from forexd.models.walkforward import WalkForwardResult, walk_forward

StopCheck = Callable[[], None]
"""Raises to abandon the cycle (called between phases and after every fold)."""

PhaseCallback = Callable[[str], None]
"""Told ``"training"`` and ``"evaluating"`` as the cycle gets there."""


def _no_stop() -> None:
    return None


def _no_phase(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle produced: the challenger, its evaluation and the verdict."""

    model: TrainedModel
    walk_forward: WalkForwardResult
    comparison: Comparison
    data_from_ts: int
    data_to_ts: int
    train_rows: int
    candles: int
    seconds: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """What the registry stores: summary, per fold, comparison and timings."""
        wf = self.walk_forward.to_dict()
        return {
            "oos_log_loss": wf["overall"]["log_loss"],
            "oos_accuracy": wf["overall"]["accuracy"],
            "oos_sharpe": wf["overall"]["trading"]["sharpe"],
            "oos_total_return": wf["overall"]["trading"]["total_return"],
            "walk_forward": {"overall": wf["overall"], "folds": wf["folds"]},
            "comparison": self.comparison.to_dict(),
            "train_rows": self.train_rows,
            "candles": self.candles,
            "seconds": self.seconds,
        }


def model_metadata(config: TrainConfig, **extra: Any) -> dict[str, Any]:
    """What an artifact records besides the model: feature spec, label, config."""
    return {
        "features": config.features.model_dump(mode="json"),
        "label": config.label.model_dump(mode="json"),
        "entry_threshold": config.entry_threshold,
        "seed": config.seed,
        **extra,
    }


def train_challenger(
    candles: Candles,
    config: TrainConfig,
    *,
    pip_size: float,
    n_jobs: int,
    bars_per_year: float = float(H1_PERIODS_PER_YEAR),
    champion: Champion | None = None,
    device: str = "cpu",
    stop: StopCheck = _no_stop,
    phase: PhaseCallback = _no_phase,
    progress: Callable[[int, int], None] | None = None,
) -> CycleResult:
    """Run one cycle over the last ``config.lookback_candles`` candles.

    Args:
        candles: history of the symbol, oldest first (at least ``lookback_candles``).
        config: features, label, model, walk-forward, thresholds, margin, seed.
        pip_size: the instrument's pip.
        n_jobs: threads per fit (``ComputeBudget.blas_threads``; never -1).
        bars_per_year: annualises Sharpe ratios.
        champion: the model trading now, to compare with; ``None`` if there is none.
        device: torch models: ``cpu``, ``cuda``, ``auto``.
        stop: raises to abandon the cycle; checked between phases and after each fold.
        phase: told when training and evaluating start (for ``ctl status``).
        progress: ``progress(done, total)`` over walk-forward folds and the final fit.

    Returns:
        The challenger (with metadata), its walk-forward result and the verdict.

    Raises:
        InsufficientDataError: fewer candles than ``lookback_candles``, or too few rows.
        ConstantSeriesError: the close does not move.
        LabelError: one-class labels.
        DataError: bad candles (non-positive prices, unsorted times).
        FitError, FeatureError, TorchUnavailableError: from the fits.
        ModelError: an RL kind (see :func:`forexd.rl.trainer.train_cycle`).
    """
    if config.model.is_rl:  # agents train in the bar simulator, not on labels
        raise ModelError(
            f"{config.model.kind} is an RL agent: its cycle runs in the bar simulator; "
            "call forexd.rl.trainer.train_cycle"
        )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if len(candles) < config.lookback_candles:
        raise InsufficientDataError(
            f"a training cycle needs lookback_candles = {config.lookback_candles} candles, "
            f"got {len(candles)}; wait for more bars, import history (forexd data import), or "
            f"lower lookback_candles (at least {config.min_candles})"
        )
    data = candles.tail(config.lookback_candles)
    phase("training")
    features = compute_features(
        data.open, data.high, data.low, data.close, data.ts, config.features
    )
    x = features.matrix
    y = make_labels(config.label, data.high, data.low, data.close, pip_size)
    first = features.first_valid_index
    labelled = np.flatnonzero(np.isfinite(y[first:]))
    end = first + int(labelled[-1]) + 1 if len(labelled) else first
    rows = end - first
    if rows < MIN_WALK_FORWARD_ROWS:
        raise InsufficientDataError(
            f"only {rows} labelled bars after the {first}-bar feature warm-up in {len(data)} "
            f"candles, the walk-forward needs {MIN_WALK_FORWARD_ROWS}; raise lookback_candles"
        )
    timings["features_s"] = time.perf_counter() - t0
    stop()

    total = config.walk_forward.n_folds + 1

    def fold_done(done: int, _total: int) -> None:
        stop()
        if progress is not None:
            progress(done, total)

    t1 = time.perf_counter()
    wf_config = config.walk_forward_config(rows, bars_per_year)
    result = walk_forward(
        config.model,
        x,
        y,
        data.close,
        pip_size=pip_size,
        config=wf_config,
        n_jobs=n_jobs,
        seed=config.seed,
        device=device,
        ts_ns=data.ts,
        feature_names=features.names,
        progress=fold_done,
    )
    timings["walk_forward_s"] = time.perf_counter() - t1
    stop()

    t2 = time.perf_counter()
    a, b = training_rows(config, end, first, result.folds[-1].train_rows)
    model = fit_model(
        config.model,
        x[a:b],
        y[a:b],
        n_jobs=n_jobs,
        seed=config.seed,
        device=device,
        feature_names=features.names,
    )
    timings["final_fit_s"] = time.perf_counter() - t2
    if progress is not None:
        progress(total, total)
    stop()

    phase("evaluating")
    t3 = time.perf_counter()
    comparison = compare_with_champion(
        champion,
        config,
        data,
        x,
        y,
        first=first,
        end=end,
        train_rows=b - a,
        test_rows=wf_config.fold_test_size,
        n_jobs=n_jobs,
        device=device,
    )
    timings["compare_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    model.metadata = model_metadata(
        config, data_from_ts=int(data.ts[a]), data_to_ts=int(data.ts[b - 1])
    )
    return CycleResult(
        model=model,
        walk_forward=result,
        comparison=comparison,
        data_from_ts=int(data.ts[a]),
        data_to_ts=int(data.ts[b - 1]),
        train_rows=b - a,
        candles=len(data),
        seconds={k: round(v, 4) for k, v in timings.items()},
    )
