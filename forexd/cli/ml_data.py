"""What the offline learning commands share: the compute budget and the candle file.

``forexd train``, ``forexd search`` and ``forexd models compare`` fix the compute budget
and the process-wide thread caps exactly as the daemon does, and read ``--data`` at
``--timeframe`` the same way.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from forexd.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from forexd.config import Settings
    from forexd.daemon.budget import ComputeBudget
    from forexd.models.trainconfig import Candles
    from forexd.strategies.ml_params import MlParams


def cli_budget(settings: Settings, *, one_thread: bool = False) -> ComputeBudget:
    """The daemon's budget for one symbol, with its thread caps applied to this process.

    ``one_thread`` (RL kinds): an RL fit is thousands of batch-1 steps of a tiny network,
    where a second torch/OpenMP thread only adds synchronisation; measured on a loaded
    2-core box, 1024 steps took 49 s of CPU with 2 threads and ~2.5 s with 1.
    """
    from dataclasses import replace

    from forexd.daemon.budget import budget_from_config
    from forexd.daemon.hardware import detect_hardware
    from forexd.daemon.threads import ThreadLimiter

    budget = budget_from_config(settings.compute, detect_hardware(), 1)
    if one_thread:
        budget = replace(budget, blas_threads=1)
    ThreadLimiter().apply(budget.blas_threads)
    return budget


def load_candle_file(args: argparse.Namespace) -> tuple[str, Candles, int]:
    """``(symbol, candles at --timeframe, timeframe seconds)`` from ``--data``."""
    from forexd.domain import get_instrument
    from forexd.domain.timeframes import TIMEFRAME_SECONDS
    from forexd.feeds.loaders import load_candles, resample_candles
    from forexd.models.trainconfig import Candles

    symbol = get_instrument(args.symbol).symbol
    frame = load_candles(args.data, args.data_format)
    seconds = TIMEFRAME_SECONDS[args.timeframe]
    step = _spacing_s(frame)
    if step > seconds:
        raise DataError(
            f"{args.data} holds bars {step} s apart, coarser than --timeframe {args.timeframe} "
            f"({seconds} s); choose a timeframe of at least {step} s"
        )
    if step < seconds:
        frame = resample_candles(frame, seconds)
    return symbol, Candles.from_frame(frame), seconds


def _spacing_s(frame: pd.DataFrame) -> int:
    import numpy as np

    ts = frame["ts"].to_numpy(dtype=np.int64)
    return int(np.median(np.diff(ts)) // 1_000_000_000) if len(ts) > 1 else 0


def check_extras(params: MlParams) -> None:
    """Fail early, naming the extra to install, when the model kind needs a missing one."""
    if params.model.is_rl:
        from forexd.models.rl_ppo import import_rl

        import_rl()  # raises RlUnavailableError naming pip install 'forexd[rl]'
    if params.model.uses_torch:
        from forexd.models.torch_models import import_torch

        import_torch()  # raises TorchUnavailableError with the install hint
