"""What a training cycle gets from the running daemon.

A :class:`~forexd.strategies.base.Trainable` strategy receives a ``TrainContext`` and
uses it for everything that is not pure learning: the compute pool (symbol semaphore,
bounded worker threads, explicit timeouts), the data and model directories, the storage
writer, the compute budget (``n_jobs`` comes from ``budget.blas_threads``, never -1) and a
logger. Backtests and ``forexd train`` build one without a daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forexd.daemon.budget import ComputeBudget
from forexd.daemon.compute import ComputePool
from forexd.daemon.jobs import TrainingJobs
from forexd.daemon.paths import DaemonPaths
from forexd.storage.db import StorageWriter


@dataclass(slots=True)
class TrainContext:
    """Runtime services for training cycles."""

    pool: ComputePool
    paths: DaemonPaths
    budget: ComputeBudget
    writer: StorageWriter | None
    log: Any
    jobs: TrainingJobs | None = None  # the daemon's job queue (ctl jobs); None offline
