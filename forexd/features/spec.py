"""Which features to compute, and over which windows.

The spec is the single source of the column layout: :attr:`FeatureSpec.names` lists the
columns in the order :func:`forexd.features.compute_features` writes them, and
:attr:`FeatureSpec.warmup_bars` says how many leading rows cannot be computed. A model
artifact stores the spec it was trained with, so a live process always builds the same
columns as the training run did.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_WINDOW_BARS = 10_000
EMA_WINDOW_SPANS = 4
"""An EMA of span ``s`` is evaluated over its last ``4 * s`` inputs only (see indicators.py).

Guessed, not tuned: the weights left out would sum to about ``exp(-8)`` (0.03 %) of the total.
"""


def _check_windows(values: tuple[int, ...], what: str, minimum: int) -> tuple[int, ...]:
    for v in values:
        if not minimum <= v <= MAX_WINDOW_BARS:
            raise ValueError(
                f"{what} must be between {minimum} and {MAX_WINDOW_BARS} bars, got {v}"
            )
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a window twice: {list(values)}")
    return values


class MacdSpec(BaseModel):
    """MACD spans in bars: fast EMA, slow EMA and the signal EMA of their difference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fast: int = Field(12, ge=1, le=MAX_WINDOW_BARS)
    slow: int = Field(26, ge=2, le=MAX_WINDOW_BARS)
    signal: int = Field(9, ge=1, le=MAX_WINDOW_BARS)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MacdSpec:
        if self.fast >= self.slow:
            raise ValueError(
                f"macd.fast ({self.fast}) must be smaller than macd.slow ({self.slow})"
            )
        return self

    @property
    def warmup_bars(self) -> int:
        """Index of the first row where the histogram is defined."""
        return EMA_WINDOW_SPANS * self.slow - 1 + EMA_WINDOW_SPANS * self.signal - 1


class FeatureSpec(BaseModel):
    """Feature selection. Empty tuples or ``None`` switch a family off.

    Attributes:
        return_horizons: log returns ``log(c[t] / c[t-h])`` for each ``h``.
        volatility_windows: rolling standard deviation of one-bar log returns.
        atr_window: average true range (simple mean), divided by the close.
        rsi_window: relative strength index (0-100) from simple averages of gains/losses.
        macd: MACD of log closes (line, signal, histogram); ``None`` switches it off.
        bollinger_window: Bollinger %b of the close over this window.
        bollinger_k: band width in standard deviations.
        zscore_windows: rolling z-score of the close.
        time_of_day: sine/cosine of the UTC time of day.
        day_of_week: sine/cosine of the UTC day of the week.
        sessions: 0/1 flags for the Tokyo, London and New York sessions (DST-aware).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    return_horizons: tuple[int, ...] = (1, 3, 6, 12, 24)
    volatility_windows: tuple[int, ...] = (24,)
    atr_window: int | None = Field(14, ge=1, le=MAX_WINDOW_BARS)
    rsi_window: int | None = Field(14, ge=1, le=MAX_WINDOW_BARS)
    macd: MacdSpec | None = MacdSpec()
    bollinger_window: int | None = Field(20, ge=2, le=MAX_WINDOW_BARS)
    bollinger_k: float = Field(2.0, gt=0, le=10)
    zscore_windows: tuple[int, ...] = (48,)
    time_of_day: bool = True
    day_of_week: bool = True
    sessions: bool = True

    @field_validator("return_horizons")
    @classmethod
    def _horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return _check_windows(value, "return_horizons", 1)

    @field_validator("volatility_windows", "zscore_windows")
    @classmethod
    def _rolling(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # A standard deviation needs two values.
        return _check_windows(value, "rolling windows", 2)

    @model_validator(mode="after")
    def _something_selected(self) -> FeatureSpec:
        if not self.names:
            raise ValueError("the feature spec selects no feature; enable at least one")
        return self

    @property
    def names(self) -> list[str]:
        """Column names, in matrix order."""
        out = [f"ret_{h}" for h in self.return_horizons]
        out += [f"vol_{w}" for w in self.volatility_windows]
        if self.atr_window is not None:
            out.append(f"atr_rel_{self.atr_window}")
        if self.rsi_window is not None:
            out.append(f"rsi_{self.rsi_window}")
        if self.macd is not None:
            out += ["macd", "macd_signal", "macd_hist"]
        if self.bollinger_window is not None:
            out.append(f"bb_pctb_{self.bollinger_window}")
        out += [f"zscore_{w}" for w in self.zscore_windows]
        if self.time_of_day:
            out += ["tod_sin", "tod_cos"]
        if self.day_of_week:
            out += ["dow_sin", "dow_cos"]
        if self.sessions:
            out += ["session_tokyo", "session_london", "session_newyork"]
        return out

    @property
    def warmup_bars(self) -> int:
        """Leading rows that are NaN: the index of the first complete row."""
        parts = [0]
        parts += list(self.return_horizons)
        parts += list(self.volatility_windows)  # w one-bar returns need w + 1 closes
        if self.atr_window is not None:
            parts.append(self.atr_window)  # true range needs the previous close
        if self.rsi_window is not None:
            parts.append(self.rsi_window)
        if self.macd is not None:
            parts.append(self.macd.warmup_bars)
        if self.bollinger_window is not None:
            parts.append(self.bollinger_window - 1)
        parts += [w - 1 for w in self.zscore_windows]
        return max(parts)

    @property
    def history_bars(self) -> int:
        """Bars the live path needs to compute one row (``warmup_bars + 1``)."""
        return self.warmup_bars + 1
