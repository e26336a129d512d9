"""Parameters of the ``ml`` strategy: the training configuration plus trading and schedule.

Kept apart from :mod:`forexd.strategies.ml` because it needs the learning layer at import
time (it subclasses :class:`~forexd.models.trainconfig.TrainConfig`), which ``ml`` must not:
see the import note there.
"""

from __future__ import annotations

import importlib.util

from pydantic import Field, model_validator

from forexd.models.errors import RL_INSTALL_HINT, TORCH_INSTALL_HINT
from forexd.models.trainconfig import TrainConfig
from forexd.strategies.base import ProtectionParams

MAX_CHALLENGERS = 16
"""Most challengers one cycle trains (a guess: each is a full walk-forward; beyond a dozen
seeds the best score mostly measures the luck of the draw on one window)."""
MAX_SEED = 2**32 - 1  # TrainConfig.seed's bound (numpy seeds are 32-bit)


class MlParams(TrainConfig, ProtectionParams):
    """Parameters of :class:`~forexd.strategies.ml.MlStrategy`.

    Attributes:
        retrain_every_bars: bars between scheduled training cycles.
        train_timeout_s: a cycle's heavy job is abandoned after this many seconds.
        exit_threshold: an open position is kept while its side's probability is at least
            this (at most ``entry_threshold``).
        units: position size in base units.
        challengers: challengers trained per cycle (seeds ``seed``, ``seed + 1``, ...),
            judged together on the latest window; the best may be promoted.
        stop_atr, take_profit_atr, trailing: protective exits (:class:`ProtectionParams`).
    """

    retrain_every_bars: int = Field(500, ge=1, description="bars between scheduled cycles")
    train_timeout_s: float = Field(
        600.0, gt=0, le=86_400, description="a cycle's heavy job is abandoned after this"
    )
    exit_threshold: float = Field(
        0.5, gt=0, le=1, description="keep a position while its side's probability is >= this"
    )
    units: int = Field(10_000, ge=1, le=100_000_000, description="position size in base units")
    device: str = Field(
        "auto", description="torch models: auto (CUDA when present), cpu, cuda or cuda:N"
    )
    challengers: int = Field(
        1,
        ge=1,
        le=MAX_CHALLENGERS,
        description="challengers trained per cycle, seeds seed, seed+1, ...; the best may be "
        "promoted",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MlParams:
        if self.exit_threshold > self.entry_threshold:
            raise ValueError(
                f"exit_threshold ({self.exit_threshold}) must not exceed entry_threshold "
                f"({self.entry_threshold})"
            )
        if self.model.uses_torch and importlib.util.find_spec("torch") is None:
            raise ValueError(f"model.kind = {self.model.kind} needs PyTorch; {TORCH_INSTALL_HINT}")
        if self.model.is_rl and importlib.util.find_spec("sb3_contrib") is None:  # issue 14
            raise ValueError(f"model.kind = {self.model.kind} needs sb3-contrib; {RL_INSTALL_HINT}")
        if self.seed + self.challengers - 1 > MAX_SEED:
            raise ValueError(
                f"challengers = {self.challengers} from seed = {self.seed} would use seeds up "
                f"to {self.seed + self.challengers - 1}, above {MAX_SEED}; lower seed"
            )
        return self
