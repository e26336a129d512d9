"""What a training cycle is told to do, and the candles it reads.

:class:`TrainConfig` is the learning half of an ML strategy's parameters (features, label,
model, lookback, walk-forward, entry threshold, promotion margin, seed);
:class:`~forexd.strategies.ml.MlParams` adds the trading and scheduling half. ``forexd train``
and ``forexd search`` build the same object, so offline evaluation and the daemon's cycles
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from forexd.domain.bars import FloatArray, IntArray
from forexd.features import FeatureSpec
from forexd.features.labels import direction_labels, triple_barrier_labels
from forexd.models.metrics import H1_PERIODS_PER_YEAR
from forexd.models.spec import GruParams, ModelSpec, RecurrentPpoParams

if TYPE_CHECKING:
    import pandas as pd

    from forexd.models.walkforward import WalkForwardConfig

MIN_WALK_FORWARD_ROWS = 50  # WalkForwardConfig.lookback_candles' own minimum
SECONDS_PER_TRADING_YEAR = 52 * 5 * 24 * 3600  # FX: ~24 h x 5 days x 52 weeks


def periods_per_year(timeframe_seconds: int) -> float:
    """Bars per trading year at this bar size (annualises the Sharpe ratio)."""
    if timeframe_seconds <= 0:
        return float(H1_PERIODS_PER_YEAR)
    return SECONDS_PER_TRADING_YEAR / timeframe_seconds


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DirectionLabel(_Frozen):
    """Direction of the close ``horizon`` bars ahead, moves within the dead band are "flat"."""

    kind: Literal["direction"] = "direction"
    horizon: int = Field(6, ge=1, le=10_000, description="bars ahead")
    dead_band_pips: float = Field(2.0, ge=0, le=10_000)
    classes: Literal["ternary", "binary"] = Field(
        "ternary", description="ternary: -1/0/+1; binary: 0/1 with dead-band moves unlabelled"
    )


class TripleBarrierLabel(_Frozen):
    """Which of take-profit, stop-loss or the ``horizon`` is reached first (long side)."""

    kind: Literal["triple_barrier"] = "triple_barrier"
    horizon: int = Field(24, ge=1, le=10_000, description="vertical barrier in bars")
    take_profit: float = Field(20.0, gt=0)
    stop_loss: float = Field(20.0, gt=0)
    unit: Literal["pips", "atr"] = "pips"
    atr_window: int = Field(14, ge=1, le=10_000)


def _label_kind(value: object) -> str:
    """The label's ``kind``; ``direction`` when a config leaves it out."""
    if isinstance(value, dict):
        return str(value.get("kind", "direction"))
    return str(getattr(value, "kind", "direction"))


LabelSpec = Annotated[
    Annotated[DirectionLabel, Tag("direction")]
    | Annotated[TripleBarrierLabel, Tag("triple_barrier")],
    Discriminator(_label_kind),
]


class WalkForwardSettings(_Frozen):
    """Walk-forward options of a training cycle (lookback and thresholds come from above)."""

    n_folds: int = Field(4, ge=1, le=1000)
    scheme: Literal["rolling", "anchored"] = "rolling"
    test_size: int | None = Field(None, ge=1, description="rows per test fold")
    train_size: int | None = Field(None, ge=1, description="rolling training rows")
    embargo_bars: int = Field(0, ge=0)
    min_train_rows: int = Field(100, ge=10)
    spread_pips: float = Field(0.8, ge=0, le=100)
    commission_per_million: float = Field(0.0, ge=0)
    slippage_pips: float = Field(
        0.0, ge=0, le=100, description="RL kinds: adverse slippage per fill in the backtest env"
    )


class TrainConfig(_Frozen):
    """What a training cycle does; :class:`~forexd.strategies.ml.MlParams` extends it.

    Attributes:
        features: feature columns and windows.
        label: the target (direction with dead band, or triple barrier).
        model: model kind and hyperparameters.
        lookback_candles: candles read per cycle, the most recent ones (feature warm-up
            and the unlabelled last ``horizon`` bars included).
        walk_forward: folds and costs.
        entry_threshold: probability needed to open a position (also the walk-forward
            trading policy's threshold).
        promote_margin: log loss (nats) a challenger must gain over the champion.
        seed: seeds every fit.
    """

    features: FeatureSpec = FeatureSpec()
    label: LabelSpec = DirectionLabel()
    model: ModelSpec = ModelSpec(kind="logistic")
    lookback_candles: int = Field(3000, ge=100, le=10_000_000)
    walk_forward: WalkForwardSettings = WalkForwardSettings()
    entry_threshold: float = Field(0.55, gt=0, le=1)
    promote_margin: float = Field(0.0, ge=-1, le=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _lookback_is_enough(self) -> TrainConfig:
        need = self.min_candles
        if self.lookback_candles < need:
            raise ValueError(
                f"lookback_candles = {self.lookback_candles} is too small: a cycle needs at "
                f"least {need} candles ({self.features.warmup_bars} feature warm-up + "
                f"{self.label.horizon} label horizon + {need - self.overhead_rows} "
                "walk-forward rows); raise it or lower walk_forward.n_folds/min_train_rows"
            )
        return self

    @property
    def context_rows(self) -> int:
        """Earlier feature rows one prediction needs (GRU window - 1, RL burn-in, else 0)."""
        params = self.model.params
        if isinstance(params, RecurrentPpoParams):
            return params.context_bars
        return params.window - 1 if isinstance(params, GruParams) else 0

    @property
    def overhead_rows(self) -> int:
        """Candles that are not walk-forward rows: feature warm-up and unlabelled tail."""
        return self.features.warmup_bars + self.label.horizon

    @property
    def min_candles(self) -> int:
        """Fewest candles for which the walk-forward plan has enough training rows."""
        wf = self.walk_forward
        gap = self.label.horizon + wf.embargo_bars
        rows = max(MIN_WALK_FORWARD_ROWS, wf.min_train_rows + gap + wf.n_folds)
        while True:
            test = wf.test_size or max(1, rows // 2 // wf.n_folds)
            if rows - wf.n_folds * test - gap >= wf.min_train_rows:
                return rows + self.overhead_rows
            rows += 1

    def walk_forward_config(self, rows: int, bars_per_year: float) -> WalkForwardConfig:
        """The walk-forward over ``rows`` labelled rows, trading at :attr:`entry_threshold`."""
        # Imported here: this module is imported by forexd.strategies.ml at import time,
        # and walkforward -> fit -> trained -> forexd.strategies would close a cycle.
        from forexd.models.walkforward import WalkForwardConfig

        wf = self.walk_forward
        return WalkForwardConfig(
            lookback_candles=rows,
            n_folds=wf.n_folds,
            scheme=wf.scheme,
            test_size=wf.test_size,
            train_size=wf.train_size,
            purge_bars=self.label.horizon,
            embargo_bars=wf.embargo_bars,
            min_train_rows=wf.min_train_rows,
            long_threshold=self.entry_threshold,
            short_threshold=self.entry_threshold,
            spread_pips=wf.spread_pips,
            commission_per_million=wf.commission_per_million,
            periods_per_year=bars_per_year,
        )


def make_labels(
    label: DirectionLabel | TripleBarrierLabel,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    pip_size: float,
) -> FloatArray:
    """Labels for every bar (NaN where undefined, always the last ``horizon``)."""
    if isinstance(label, DirectionLabel):
        return direction_labels(
            close,
            label.horizon,
            dead_band_pips=label.dead_band_pips,
            pip_size=pip_size,
            kind=label.classes,
        )
    return triple_barrier_labels(
        high,
        low,
        close,
        horizon=label.horizon,
        take_profit=label.take_profit,
        stop_loss=label.stop_loss,
        unit=label.unit,
        pip_size=pip_size,
        atr_window=label.atr_window,
    )


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Candles:
    """OHLC columns of one symbol, oldest first (epoch-ns open times)."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Candles:
        """From a candle frame (``forexd.feeds``: ts, open, high, low, close...)."""
        return cls(
            frame["ts"].to_numpy(dtype=np.int64),
            frame["open"].to_numpy(dtype=np.float64),
            frame["high"].to_numpy(dtype=np.float64),
            frame["low"].to_numpy(dtype=np.float64),
            frame["close"].to_numpy(dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def tail(self, n: int) -> Candles:
        """The last ``n`` candles."""
        s = slice(max(0, len(self) - n), len(self))
        return Candles(self.ts[s], self.open[s], self.high[s], self.low[s], self.close[s])


def training_rows(config: TrainConfig, end: int, first: int, train_rows: int) -> tuple[int, int]:
    """Rows ``[a, b)`` a model trains on when its data ends (exclusive) at ``end``.

    Rolling: the last ``train_rows`` rows, as the walk-forward's folds did; anchored: every
    row from ``first``, the first complete feature row.
    """
    if config.walk_forward.scheme == "anchored":
        return first, end
    return max(first, end - train_rows), end
