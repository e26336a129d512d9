"""Job functions: the units of work an executor runs, locally or as Ray tasks.

Each is a module-level function of picklable arguments that returns picklable values and
knows nothing of where it runs (:mod:`forexd.models.executor`). Heavy inputs (candles,
the feature matrix) travel as one :class:`SearchData` made once per search and shipped once
(``executor.put``), so a trial sends only its configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.models.trainconfig import Candles, TrainConfig, make_labels
from forexd.models.walkforward import walk_forward


@dataclass(frozen=True, slots=True)
class SearchData:
    """What every trial of one search reads: the candles and the features, computed once.

    Attributes:
        ts: epoch-ns open times of the candles searched.
        high, low, close: their prices (labels are made from them per trial).
        matrix: the feature matrix (rows = candles).
        first: first row with every feature defined.
        pip_size: the instrument's pip.
        bars_per_year: annualises the Sharpe ratio.
    """

    ts: IntArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    matrix: FloatArray
    first: int
    pip_size: float
    bars_per_year: float


def evaluate_trial(data: SearchData, config: TrainConfig, blas_threads: int) -> dict[str, Any]:
    """Walk-forward one trial's configuration; its out-of-sample score after costs.

    Args:
        data: the search's candles and features.
        config: the trial's label, model and entry threshold (features are the search's).
        blas_threads: threads the model may use (``n_jobs``; never -1).

    Returns:
        ``{"sharpe", "log_loss", "trading"}``; ``sharpe`` is 0.0 where it is not finite.

    Raises:
        ForexdError: the configuration cannot be evaluated on this data (too few rows,
            one-class labels...); the driver records it on the trial.
    """
    y = make_labels(config.label, data.high, data.low, data.close, data.pip_size)
    end = data.first + int(np.flatnonzero(np.isfinite(y[data.first :]))[-1]) + 1
    result = walk_forward(
        config.model,
        data.matrix,
        y,
        data.close,
        pip_size=data.pip_size,
        config=config.walk_forward_config(end - data.first, data.bars_per_year),
        n_jobs=blas_threads,
        seed=config.seed,
        ts_ns=data.ts,
    )
    sharpe = result.trading.sharpe
    return {
        "sharpe": sharpe if math.isfinite(sharpe) else 0.0,
        "log_loss": result.log_loss,
        "trading": result.trading.to_dict(),
    }


def train_job(
    candles: Candles,
    config: TrainConfig,
    pip_size: float,
    blas_threads: int,
    bars_per_year: float,
) -> Any:
    """One training cycle without a champion (``forexd train``): a ``CycleResult``.

    Raises:
        ForexdError: too little data, one-class labels, a torch kind without torch...
    """
    from forexd.models.trainer import train_challenger

    return train_challenger(
        candles, config, pip_size=pip_size, n_jobs=blas_threads, bars_per_year=bars_per_year
    )
