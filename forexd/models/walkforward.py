"""Walk-forward evaluation: train on the past, test on the following bars, slide, repeat.

Layout over the evaluated window (the last ``lookback_candles`` labelled rows)::

    anchored: [train.........][gap][test 1]
              [train..................][gap][test 2]
    rolling:       [train.....][gap][test 1]
                           [train.....][gap][test 2]

The test folds tile the end of the window. The gap is ``purge + embargo`` rows: the label
of a training row ``t`` describes bars up to ``t + horizon``, so the last ``horizon`` training
rows would otherwise read prices from inside the test fold. The purge is never shorter than
the labels' own horizon, taken as the number of unlabelled rows at the end of ``y`` (labels
from :mod:`forexd.features.labels` leave exactly ``horizon`` rows NaN there).

Each fold reports accuracy, log loss and the trading result of a long/short/flat policy
after spread and commission; ``overall`` pools all test rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from forexd.domain import ns_to_iso
from forexd.domain.bars import FloatArray, IntArray
from forexd.features.core import first_valid_index
from forexd.models.errors import (
    ConstantSeriesError,
    FeatureError,
    InsufficientDataError,
    LabelError,
    ModelError,
)
from forexd.models.fit import fit_model
from forexd.models.metrics import (
    H1_PERIODS_PER_YEAR,
    CostModel,
    TradingMetrics,
    accuracy,
    log_loss,
    positions_from_proba,
    strategy_returns,
    summarise,
)
from forexd.models.spec import ModelSpec

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done_folds, total_folds)``: once with 0 before the first fold."""


class WalkForwardConfig(BaseModel):
    """How to split and score.

    Attributes:
        lookback_candles: labelled rows evaluated (the most recent ones).
        n_folds: test folds.
        scheme: ``rolling`` (fixed-length training window) or ``anchored`` (growing).
        test_size: rows per test fold; default: half the lookback shared by the folds.
        train_size: rolling training rows; default: all rows before the first test fold.
        purge_bars: rows dropped between train and test (at least the label horizon).
        embargo_bars: further rows dropped (serial correlation of features).
        min_train_rows: fewest training rows a fold may have.
        long_threshold: go long when P(up) reaches this.
        short_threshold: go short when P(down) reaches this.
        spread_pips: full spread paid on position changes (half per change).
        commission_per_million: commission per 1M of notional traded.
        periods_per_year: bars per year, to annualise the Sharpe ratio (H1 default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback_candles: int = Field(5000, ge=50, le=10_000_000)
    n_folds: int = Field(5, ge=1, le=1000)
    scheme: Literal["rolling", "anchored"] = "rolling"
    test_size: int | None = Field(None, ge=1)
    train_size: int | None = Field(None, ge=1)
    purge_bars: int = Field(0, ge=0)
    embargo_bars: int = Field(0, ge=0)
    min_train_rows: int = Field(100, ge=10)
    long_threshold: float = Field(0.5, gt=0, le=1)
    short_threshold: float = Field(0.5, gt=0, le=1)
    spread_pips: float = Field(0.8, ge=0, le=100)
    commission_per_million: float = Field(0.0, ge=0)
    periods_per_year: float = Field(H1_PERIODS_PER_YEAR, gt=0)

    @model_validator(mode="after")
    def _tests_fit(self) -> WalkForwardConfig:
        if self.test_size is not None and self.test_size * self.n_folds >= self.lookback_candles:
            raise ValueError(
                f"n_folds x test_size ({self.n_folds} x {self.test_size}) leaves no training "
                f"rows in lookback_candles ({self.lookback_candles})"
            )
        return self

    @property
    def fold_test_size(self) -> int:
        """Rows per test fold."""
        return self.test_size or max(1, self.lookback_candles // 2 // self.n_folds)


@dataclass(frozen=True, slots=True)
class FoldResult:
    """One fold: its rows (absolute indices, end exclusive) and out-of-sample scores."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int
    train_rows: int
    test_rows: int
    labelled_test_rows: int
    accuracy: float
    log_loss: float
    trading: TradingMetrics
    fit_seconds: float
    test_from: str | None = None
    test_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values, JSON-ready."""
        out = asdict(self)
        out["trading"] = self.trading.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """Every fold and the pooled out-of-sample metrics."""

    spec: ModelSpec
    config: WalkForwardConfig
    classes: tuple[int, ...]
    window_start: int
    window_end: int
    purge_bars: int
    folds: tuple[FoldResult, ...]
    accuracy: float
    log_loss: float
    trading: TradingMetrics

    def to_dict(self) -> dict[str, Any]:
        """Plain values, JSON-ready."""
        return {
            "spec": self.spec.model_dump(mode="json"),
            "config": self.config.model_dump(mode="json"),
            "classes": list(self.classes),
            "window_start": self.window_start,
            "window_end": self.window_end,
            "purge_bars": self.purge_bars,
            "folds": [f.to_dict() for f in self.folds],
            "overall": {
                "accuracy": self.accuracy,
                "log_loss": self.log_loss,
                "trading": self.trading.to_dict(),
            },
        }


@dataclass(frozen=True, slots=True)
class _Plan:
    start: int
    end: int
    purge: int
    folds: tuple[tuple[int, int, int, int], ...]  # train_start, train_end, test_start, test_end


def _plan(x: FloatArray, y: FloatArray, close: FloatArray, config: WalkForwardConfig) -> _Plan:
    n = len(x)
    if x.ndim != 2:
        raise FeatureError(f"walk-forward: features must be a 2-D matrix, got shape {x.shape}")
    if y.shape != (n,) or close.shape != (n,):
        raise FeatureError(
            f"walk-forward: features have {n} rows but labels {y.shape} and close {close.shape}; "
            "pass aligned 1-D labels and closes"
        )
    labelled = np.flatnonzero(np.isfinite(y))
    end = int(labelled[-1]) + 1 if len(labelled) else 0
    if n and end == n:
        raise LabelError(
            "walk-forward: the last row has a label, but a label describes bars after its "
            "row, so at least the last one must be NaN; build labels with forexd.features.labels"
        )
    unlabelled_tail = n - end
    warmup = first_valid_index(x) if n else 0
    lookback = config.lookback_candles
    need = warmup + lookback + unlabelled_tail
    if n < need or end == 0:
        raise InsufficientDataError(
            f"walk-forward needs {need} rows ({warmup} warm-up + {lookback} lookback + "
            f"{unlabelled_tail} unlabelled at the end), got {n}; load more history "
            "or lower lookback_candles"
        )
    start = end - lookback
    bad_rows = np.flatnonzero(~np.isfinite(x[start:end]).all(axis=1))
    if len(bad_rows):
        row = start + int(bad_rows[0])
        col = int(np.flatnonzero(~np.isfinite(x[row]))[0])
        raise FeatureError(
            f"walk-forward: NaN/inf features after the warm-up ({len(bad_rows)} rows; first at "
            f"row {row}, column {col}); the bars have gaps or bad prices, clean them"
        )
    if np.ptp(close[start:end]) == 0.0:
        raise ConstantSeriesError(
            f"walk-forward: the close is constant ({close[start]}) over the {lookback} evaluated "
            "rows; there is nothing to learn (check the data source)"
        )
    if len(np.unique(y[start:end][np.isfinite(y[start:end])])) < 2:
        raise LabelError(
            f"walk-forward: the labels over the last {lookback} rows hold fewer than two "
            "classes; widen the lookback or narrow the dead band / barriers"
        )
    purge = max(config.purge_bars, unlabelled_tail)
    gap = purge + config.embargo_bars
    test = config.fold_test_size
    first_test = end - config.n_folds * test
    initial_train = first_test - gap - start
    if initial_train < config.min_train_rows:
        raise InsufficientDataError(
            f"walk-forward: the first fold would train on {initial_train} rows "
            f"(lookback {lookback} - {config.n_folds} folds x {test} test rows - gap {gap}), "
            f"need at least {config.min_train_rows}; raise lookback_candles or lower "
            "n_folds/test_size"
        )
    train_size = config.train_size or initial_train
    folds = []
    for k in range(config.n_folds):
        test_start = first_test + k * test
        train_end = test_start - gap
        train_start = start if config.scheme == "anchored" else max(start, train_end - train_size)
        folds.append((train_start, train_end, test_start, test_start + test))
    return _Plan(start, end, purge, tuple(folds))


def walk_forward(
    spec: ModelSpec,
    x: FloatArray,
    y: FloatArray,
    close: FloatArray,
    *,
    pip_size: float,
    config: WalkForwardConfig,
    n_jobs: int,
    seed: int,
    device: str = "cpu",
    ts_ns: IntArray | None = None,
    feature_names: list[str] | None = None,
    progress: ProgressCallback | None = None,
) -> WalkForwardResult:
    """Evaluate ``spec`` out of sample over the last ``config.lookback_candles`` rows.

    Args:
        spec: model to train in every fold.
        x: feature matrix of the whole series (warm-up rows NaN), ``[n, F]``.
        y: labels, NaN where undefined (at least the last ``horizon`` rows).
        close: closes, aligned with the rows; trades enter and exit at closes.
        pip_size: price of one pip, for the spread.
        config: folds, thresholds and costs.
        n_jobs: threads for the random forest.
        seed: passed to every fit (each fold uses the same seed).
        device: torch models: ``cpu``, ``cuda``, ``auto``.
        ts_ns: bar times, to label folds with dates in the result.
        feature_names: stored with each fold's model.
        progress: ``progress(done, total)`` after each fold, for a progress bar.

    Returns:
        Per-fold and pooled metrics.

    Raises:
        InsufficientDataError: too few rows for the lookback (says how many are needed) or
            for the first fold's training set.
        FeatureError: misaligned inputs, or NaN/inf features after the warm-up.
        ConstantSeriesError: the close does not move over the window.
        LabelError: the labels of the window (or of one fold) hold a single class.
        FitError: a fold's model raised or failed to converge (names the fold and kind).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    plan = _plan(x, y, close, config)
    costs = CostModel(config.spread_pips, pip_size, config.commission_per_million)
    total = len(plan.folds)
    if progress is not None:
        progress(0, total)
    folds: list[FoldResult] = []
    nets, cost_parts, position_parts = [], [], []
    classes: IntArray = np.empty(0, dtype=np.int64)
    for k, (a, b, s, e) in enumerate(plan.folds):
        try:
            model = fit_model(
                spec,
                x[a:b],
                y[a:b],
                n_jobs=n_jobs,
                seed=seed,
                device=device,
                feature_names=feature_names,
            )
            # Sequence models read `context_rows` rows before the first test row; those are
            # features of past bars (known at that time), not labels, so nothing leaks.
            ctx = model.context_rows
            proba = model.predict_proba(x[max(0, s - ctx) : e])[-(e - s) :]
            positions = positions_from_proba(
                proba,
                model.classes,
                long_threshold=config.long_threshold,
                short_threshold=config.short_threshold,
            )
        except ModelError as exc:
            raise type(exc)(f"walk-forward fold {k + 1}/{total}: {exc}") from exc
        classes = np.union1d(classes, model.classes)
        net, cost = strategy_returns(positions, close[s : e + 1], costs)
        y_test = y[s:e]
        known = np.isfinite(y_test) & np.isfinite(proba).all(axis=1)
        folds.append(
            FoldResult(
                index=k,
                train_start=a,
                train_end=b,
                test_start=s,
                test_end=e,
                train_rows=b - a,
                test_rows=e - s,
                labelled_test_rows=int(np.count_nonzero(known)),
                accuracy=accuracy(y_test[known], proba[known], model.classes),
                log_loss=log_loss(y_test[known], proba[known], model.classes),
                trading=summarise(net, cost, positions, config.periods_per_year),
                fit_seconds=float(model.info.get("fit_seconds", 0.0)),
                test_from=ns_to_iso(int(ts_ns[s])) if ts_ns is not None else None,
                test_to=ns_to_iso(int(ts_ns[e - 1])) if ts_ns is not None else None,
            )
        )
        nets.append(net)
        cost_parts.append(cost)
        position_parts.append(positions)
        if progress is not None:
            progress(k + 1, total)
    pooled = summarise(
        np.concatenate(nets),
        np.concatenate(cost_parts),
        np.concatenate(position_parts),
        config.periods_per_year,
    )
    return WalkForwardResult(
        spec=spec,
        config=config,
        classes=tuple(int(c) for c in classes),
        window_start=plan.start,
        window_end=plan.end,
        purge_bars=plan.purge,
        folds=tuple(folds),
        accuracy=_pooled([(f.accuracy, f.labelled_test_rows) for f in folds]),
        log_loss=_pooled([(f.log_loss, f.labelled_test_rows) for f in folds]),
        # Each fold opens and closes its own trades; counting on the concatenation would
        # merge a position held across a fold boundary into one trade.
        trading=replace(pooled, trades=sum(f.trading.trades for f in folds)),
    )


def _pooled(values: list[tuple[float, int]]) -> float:
    """Row-weighted mean of per-fold scores (the score over all test rows at once)."""
    rows = sum(n for _, n in values)
    if rows == 0:
        return float("nan")
    return sum(v * n for v, n in values if n) / rows
