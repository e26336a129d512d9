"""The heavy half of an ML training cycle: what runs in a compute-pool worker (thread or
spawned process). The loop half is :mod:`forexd.daemon.trainer`.

:func:`training_job` reads the symbol's candles from the store (its own read-only
connection), runs :func:`~forexd.rl.trainer.train_cycle` (the supervised or the RL
cycle) and writes the artifact file. It returns the registry row instead of writing it:
rows go through the daemon's one storage writer, from the event loop (see
:mod:`forexd.storage.model_registry`).

On Ray (``[compute] backend = "ray"``) a remote node can neither read the daemon's SQLite
file nor write its model directory, so the cycle is cut at those two points: the daemon
reads the candles (:func:`read_training_candles`), :func:`cycle_job` trains on them as a Ray
task and sends the model back, and the daemon writes the artifact (:func:`save_challenger`);
see :mod:`forexd.daemon.trainremote`.

A worker thread cannot be killed. :class:`CycleHandle` is how the loop and the thread part
ways when the loop stops waiting (timeout, shutdown): the thread checks it between steps and
after every walk-forward fold, and once abandoned it stops there and never reports a phase
again, so a late thread cannot overwrite the state of a newer cycle.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from forexd.daemon.budget import ComputeBudget
from forexd.daemon.paths import DaemonPaths
from forexd.domain import get_instrument
from forexd.domain.bars import IntArray
from forexd.domain.timeframes import TIMEFRAME_SECONDS
from forexd.errors import DataError
from forexd.models.artifacts import save_model
from forexd.models.promotion import Champion
from forexd.models.trainconfig import Candles, TrainConfig, periods_per_year
from forexd.models.trainer import CycleResult
from forexd.rl.trainer import train_cycle
from forexd.storage.db import now_ns, open_sync
from forexd.storage.model_registry import ModelRecord, ModelRegistry, new_model_id

NS_PER_S = 1_000_000_000
NODE_ID_CHARS = 12  # of a Ray node id (56 hex): enough to tell a cluster's nodes apart


class TrainEnv(Protocol):
    """What a training job reads from its runtime: where the data is, how many threads."""

    @property
    def paths(self) -> DaemonPaths:
        """Data and model directories."""
        ...

    @property
    def budget(self) -> ComputeBudget:
        """The compute budget (``blas_threads`` threads per fit)."""
        ...


class AbandonedError(Exception):
    """Raised inside an abandoned job's thread; nobody waits for its result any more."""


class CycleHandle:
    """One cycle's hand-off between the event loop and its worker thread.

    Args:
        cycle_id: the id every log line of the cycle carries.
        on_phase: told ``"training"``/``"evaluating"`` while the cycle is still wanted.
        on_progress: told ``(done, total)`` walk-forward steps (the daemon's job queue).
    """

    def __init__(
        self,
        cycle_id: str,
        on_phase: Callable[[str], None],
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.cycle_id = cycle_id
        self._on_phase = on_phase
        self._on_progress = on_progress
        self._phase = ""
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        """The loop stopped waiting: make :meth:`check` raise from now on."""
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        """Whether :meth:`abandon` was called."""
        return self._abandoned.is_set()

    def check(self) -> None:
        """Raise :class:`AbandonedError` once abandoned (called by the worker)."""
        if self._abandoned.is_set():
            raise AbandonedError(f"cycle {self.cycle_id} was abandoned")

    def phase(self, name: str) -> None:
        """Report a phase once, unless the cycle was abandoned."""
        if name != self._phase and not self._abandoned.is_set():
            self._phase = name
            self._on_phase(name)

    def progress(self, done: int, total: int) -> None:
        """Report walk-forward progress, unless the cycle was abandoned."""
        if self._on_progress is not None and not self._abandoned.is_set():
            self._on_progress(done, total)


def read_training_candles(
    db_path: Path, symbol: str, bar_times: IntArray, limit: int
) -> tuple[Candles, str, int]:
    """The last ``limit`` stored candles of ``symbol`` up to the newest of ``bar_times``.

    The timeframe is the one stored for the symbol or, if several are, the one whose bar
    size matches the spacing of ``bar_times`` (the bars the actor saw).

    Returns:
        ``(candles, timeframe, timeframe_seconds)``.

    Raises:
        DataError: no candles, or several timeframes none of which fits.
    """
    spacing = int(np.median(np.diff(bar_times)) // NS_PER_S) if len(bar_times) > 1 else 0
    conn = open_sync(db_path, readonly=True)
    try:
        sql = "SELECT DISTINCT timeframe FROM candles WHERE symbol = ?"
        stored = [str(r[0]) for r in conn.execute(sql, (symbol,))]
        fits = [tf for tf in stored if TIMEFRAME_SECONDS.get(tf) == spacing]
        if len(stored) == 1:
            timeframe = stored[0]
        elif len(fits) == 1:
            timeframe = fits[0]
        else:
            raise DataError(
                f"{symbol}: the store holds candles of timeframes {stored or 'none'}; cannot "
                f"tell which one the strategy trades (its bars are {spacing} s apart)"
            )
        rows = conn.execute(
            "SELECT ts, open, high, low, close FROM candles WHERE symbol = ? AND timeframe = ? "
            "AND ts <= ? ORDER BY ts DESC LIMIT ?",
            (symbol, timeframe, int(bar_times[-1]), limit),
        ).fetchall()
    finally:
        conn.close()
    rows.reverse()
    ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    ohlc = np.asarray([r[1:] for r in rows], dtype=np.float64).reshape(-1, 4)
    candles = Candles(ts, *(np.ascontiguousarray(ohlc[:, i]) for i in range(4)))
    return candles, timeframe, TIMEFRAME_SECONDS.get(timeframe, spacing)


def training_job(
    config: TrainConfig,
    ctx: TrainEnv,
    registry: ModelRegistry,
    handle: CycleHandle | _ProcessHandle,
    symbol: str,
    bar_times: IntArray,
    champion: Champion | None,
    device: str = "cpu",
) -> tuple[CycleResult, ModelRecord]:
    """Data, training, evaluation and the artifact file; returns the row to register.

    Args:
        config: the strategy's training configuration.
        device: where torch models train (resolved; the caller holds its semaphore).
        ctx: data paths and compute budget (the daemon's ``TrainContext``).
        registry: where the artifact goes.
        handle: the cycle's id and abandonment flag.
        symbol: the instrument.
        bar_times: open times of the bars the actor held when the cycle started (a copy,
            never the actor's live window); the newest is the cut-off.
        champion: the model trading now (read-only here; ``predict_proba`` is thread-safe).

    Raises:
        AbandonedError: the loop gave up on this cycle.
        ModelError, DataError: from the data and the learning code.
        OSError: the artifact cannot be written.
    """
    handle.phase("training")
    candles, timeframe, seconds = read_training_candles(
        ctx.paths.db, symbol, bar_times, config.lookback_candles
    )
    result = train_cycle(
        candles,
        config,
        pip_size=get_instrument(symbol).pip_size,
        n_jobs=ctx.budget.blas_threads,
        bars_per_year=periods_per_year(seconds),
        champion=champion,
        stop=handle.check,
        phase=handle.phase,
        device=device,
        symbol=symbol,
        progress=handle.progress,
    )
    handle.check()
    record = save_challenger(
        config, result, registry, symbol=symbol, timeframe=timeframe, cycle_id=handle.cycle_id
    )
    return result, record


def save_challenger(
    config: TrainConfig,
    result: CycleResult,
    registry: ModelRegistry,
    *,
    symbol: str,
    timeframe: str,
    cycle_id: str,
) -> ModelRecord:
    """Name the trained challenger, write its artifact, return its row (blocking).

    Where the model was trained does not matter: a worker thread calls this after training,
    the daemon calls it on the model a Ray task sent back.

    Raises:
        OSError: the artifact cannot be written.
    """
    created = now_ns()
    model_id = new_model_id(symbol, created)
    result.model.metadata |= {
        "symbol": symbol,
        "timeframe": timeframe,
        "model_id": model_id,
        "cycle_id": cycle_id,
    }
    save_model(result.model, registry.artifact_path(symbol, model_id))
    return make_record(
        config,
        result,
        registry,
        symbol=symbol,
        model_id=model_id,
        created_ns=created,
        cycle_id=cycle_id,
    )


def cycle_job(
    candles: Candles,
    config: TrainConfig,
    champion: Champion | None,
    pip_size: float,
    bars_per_year: float,
    blas_threads: int,
    device: str,
    symbol: str,
) -> tuple[CycleResult, str]:
    """One challenger trained and compared wherever an executor runs it (a Ray task).

    Everything it needs travels with it — the candles read by the daemon, the training
    configuration, the champion to beat — and the trained model travels back; it touches
    no file and no database, so it runs on any node. No phases or progress are reported
    from here (nothing on a remote node can reach the daemon's job queue).

    Returns:
        ``(result, node)``: the cycle's result (the model included) and the node it ran on.

    Raises:
        ModelError, DataError: from the learning code (too little data, one-class labels...).
    """
    result = train_cycle(
        candles,
        config,
        symbol=symbol,
        pip_size=pip_size,
        n_jobs=blas_threads,
        bars_per_year=bars_per_year,
        champion=champion,
        device=device,
    )
    return result, node_name()


def node_name() -> str:
    """Where this process runs: ``IP/node-id`` (first 12 hex) in a Ray worker, else the host."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        node_id = str(ray.get_runtime_context().get_node_id())
        return f"{ray.util.get_node_ip_address()}/{node_id[:NODE_ID_CHARS]}"
    return socket.gethostname()


class _ProcessHandle:
    """The handle of a cycle run in a worker process: the loop cannot reach into it, and
    does not need to — a timed-out or cancelled worker process is killed."""

    def __init__(self, cycle_id: str) -> None:
        self.cycle_id = cycle_id

    def check(self) -> None:
        """Nothing to check: the process is killed instead of told."""

    def phase(self, name: str) -> None:
        """Phases are not reported across the process boundary."""

    def progress(self, done: int, total: int) -> None:
        """Nor is progress (the job shows its phase only)."""


@dataclass(frozen=True, slots=True)
class _ProcessContext:
    """The parts of a ``TrainContext`` a worker process needs (picklable)."""

    paths: DaemonPaths
    budget: ComputeBudget


def training_job_in_process(
    config: TrainConfig,
    paths: DaemonPaths,
    budget: ComputeBudget,
    cycle_id: str,
    symbol: str,
    bar_times: IntArray,
    champion: Champion | None,
    device: str = "cpu",
) -> tuple[CycleResult, ModelRecord]:
    """:func:`training_job` for ``compute.executor = "processes"`` (runs in the child).

    The child applies the same thread caps as the daemon before any heavy import works.
    """
    from forexd.daemon.threads import ThreadLimiter

    ThreadLimiter().apply(budget.blas_threads)
    registry = ModelRegistry(paths.db, paths.models, None)
    return training_job(
        config,
        _ProcessContext(paths, budget),
        registry,
        _ProcessHandle(cycle_id),
        symbol,
        bar_times,
        champion,
        device,
    )


def make_record(
    config: TrainConfig,
    result: CycleResult,
    registry: ModelRegistry,
    *,
    symbol: str,
    model_id: str,
    created_ns: int,
    cycle_id: str | None,
) -> ModelRecord:
    """The registry row of a freshly trained challenger (status ``challenger``)."""
    return ModelRecord(
        model_id=model_id,
        symbol=symbol,
        kind=config.model.kind,
        spec=config.model.model_dump(mode="json"),
        feature_spec=config.features.model_dump(mode="json"),
        label=config.label.model_dump(mode="json"),
        data_from_ts=result.data_from_ts,
        data_to_ts=result.data_to_ts,
        metrics=result.metrics(),
        created_ns=created_ns,
        status="challenger",
        artifact=registry.relative_artifact(symbol, model_id),
        cycle_id=cycle_id,
    )
