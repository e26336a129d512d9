"""What a training cycle gets from the running daemon.

The trainer (:mod:`forexd.daemon.trainer`) receives a :class:`TrainServices` and uses it
for everything that is not pure learning: the compute pool (symbol semaphore, bounded
worker threads, explicit timeouts), the data and model directories, the storage writer,
the compute budget (``n_jobs`` comes from ``budget.blas_threads``, never -1), a logger, the
job queue and, with ``[compute] backend = "ray"``, the cluster the challengers train on.
:class:`TrainContext` is the daemon's implementation; tests and ``forexd train`` build one
without a daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from forexd.daemon.budget import ComputeBudget
from forexd.daemon.compute import ComputePool
from forexd.daemon.jobs import TrainingJobs
from forexd.daemon.paths import DaemonPaths
from forexd.models.executor import JobExecutor
from forexd.storage.db import StorageWriter


class TrainServices(Protocol):
    """The runtime services a trainer uses (the typed contract of a cycle's context)."""

    @property
    def pool(self) -> ComputePool:
        """Where the heavy job runs (symbol semaphore, workers, timeouts)."""
        ...

    @property
    def paths(self) -> DaemonPaths:
        """Data and model directories."""
        ...

    @property
    def budget(self) -> ComputeBudget:
        """Threads per fit and the rest of the compute budget."""
        ...

    @property
    def writer(self) -> StorageWriter | None:
        """The daemon's storage writer (registry rows go through it); ``None`` offline."""
        ...

    @property
    def log(self) -> Any:
        """A structlog logger bound with ``component="trainer"``."""
        ...

    @property
    def jobs(self) -> TrainingJobs | None:
        """The daemon's training job queue (``ctl jobs``); ``None`` offline."""
        ...

    @property
    def executor(self) -> JobExecutor | None:
        """A remote executor (Ray) that trains challengers; ``None``: the local pool."""
        ...


@dataclass(slots=True)
class TrainContext:
    """Runtime services for training cycles (implements :class:`TrainServices`)."""

    pool: ComputePool
    paths: DaemonPaths
    budget: ComputeBudget
    writer: StorageWriter | None
    log: Any
    jobs: TrainingJobs | None = None  # the daemon's job queue (ctl jobs); None offline
    executor: JobExecutor | None = None  # [compute] backend = "ray"; None: the local pool
