"""One challenger trained on a remote executor (``[compute] backend = "ray"``).

The local cycle (:func:`~forexd.daemon.trainjob.training_job`) reads the store and writes
the artifact inside its worker; a Ray node can do neither. So the daemon, the Ray driver,
does the two file-bound steps itself, off the loop, and sends only what the learning needs:

1. read the candles from the store (a worker thread, as the local job would);
2. submit :func:`~forexd.daemon.trainjob.cycle_job` with the candles, the training
   configuration, the champion to beat and the thread budget; the task runs ``train_cycle``
   with the budget's thread caps on whichever node Ray picks;
3. wait for it in a daemon thread, within ``train_timeout_s``;
4. write the returned model's artifact and make its registry row
   (:func:`~forexd.daemon.trainjob.save_challenger`); the trainer registers and promotes it
   exactly as a local challenger.

What the pool bounds locally still holds: the symbol slot (``max_concurrent_symbols``) is
held for the whole exchange. The pool's GPU semaphore is not taken: it guards this
machine's GPU, while a Ray task trains on its node's CPUs (the executor reserves a GPU per
task only where it was built with ``use_gpu``, and Ray then places that GPU itself).

A timed-out or cancelled cycle (``ctl cancel JOB``, a shutdown, a reload that drops the
model) kills its task with ``executor.cancel`` (``ray.cancel(force=True)``) and re-raises;
the kill is bounded by :data:`CANCEL_WAIT_S` so a shutdown is never held by the cluster.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt

from forexd.daemon.compute import JobTimeoutError
from forexd.daemon.offloop import run_abandonable
from forexd.daemon.trainjob import cycle_job, read_training_candles, save_challenger
from forexd.domain import get_instrument
from forexd.models.trainconfig import periods_per_year

if TYPE_CHECKING:
    from forexd.daemon.training import TrainServices
    from forexd.daemon.trainjob import CycleHandle
    from forexd.models.executor import JobExecutor, JobHandle
    from forexd.models.promotion import Champion
    from forexd.models.trainer import CycleResult
    from forexd.storage.model_registry import ModelRecord, ModelRegistry
    from forexd.strategies.ml_params import MlParams

WAIT_SLICE_S = 1.0
"""The waiting thread checks every second whether the cycle still wants the result, so an
abandoned wait ends within a second instead of holding a thread (and the cluster
connection) until ``train_timeout_s`` (a guess: no measurable cost at one poll a second)."""
CANCEL_WAIT_S = 5.0  # ray.cancel is one request; a cluster that does not answer is left


async def train_remote(
    ctx: TrainServices,
    executor: JobExecutor,
    handle: CycleHandle,
    *,
    symbol: str,
    times: npt.NDArray[np.int64],
    params: MlParams,
    registry: ModelRegistry,
    champion: Champion | None,
) -> tuple[CycleResult, ModelRecord]:
    """Train one challenger on ``executor``; write its artifact here; return its row.

    Args:
        ctx: the daemon's training services (pool, paths, budget, job queue, logger).
        executor: where the task runs (a ``RayExecutor``).
        handle: the cycle's id and phase reporting.
        symbol: the instrument.
        times: the actor's bar times when the cycle started (the newest is the cut-off).
        params: the training configuration (``train_timeout_s`` bounds the whole exchange).
        registry: where the artifact goes.
        champion: the model to beat (sent with the task).

    Raises:
        JobTimeoutError: the task ran past ``train_timeout_s`` (it was cancelled).
        SymbolWaitTimeoutError: every symbol slot stayed busy for ``train_timeout_s``.
        ModelError, DataError: from the data and the learning code.
        OSError: the artifact cannot be written.
    """
    timeout_s = float(params.train_timeout_s)
    log = ctx.log.bind(symbol=symbol, cycle_id=handle.cycle_id, backend=executor.backend)
    async with ctx.pool.symbol_slot(timeout_s=timeout_s):
        handle.phase("training")
        candles, timeframe, seconds = await anyio.to_thread.run_sync(
            read_training_candles, ctx.paths.db, symbol, times, params.lookback_candles
        )
        # The device is the task's node's: a GPU only where the executor reserves one.
        gpus = int(getattr(executor, "num_gpus", 0))
        device = "cuda" if params.model.uses_torch and gpus else "cpu"
        args = (candles, params, champion, get_instrument(symbol).pip_size,
                periods_per_year(seconds), ctx.budget.blas_threads, device, symbol)  # fmt: skip
        started = time.monotonic()
        # Not abandonable: the handle must come back so that a cancellation can kill the
        # task (serialising the candles and the champion for the object store takes a while).
        job = await anyio.to_thread.run_sync(
            lambda: executor.submit(cycle_job, *args, label=handle.cycle_id)
        )
        log.info("training_task_submitted", candles=len(candles.ts), device=device)
        wanted = threading.Event()
        wanted.set()
        try:
            result, node = await run_abandonable(_wait_result, executor, job, timeout_s, wanted)
        except BaseException:  # a timeout, a cancellation, the job's own error: kill the task
            wanted.clear()
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_WAIT_S):
                await run_abandonable(executor.cancel, job)
            raise
        if ctx.jobs is not None:
            ctx.jobs.placed(symbol, node)
        log.info("training_task_done", node=node, task_s=round(time.monotonic() - started, 3))
        save = functools.partial(
            save_challenger, symbol=symbol, timeframe=timeframe, cycle_id=handle.cycle_id
        )
        record = await anyio.to_thread.run_sync(save, params, result, registry)
    return result, record


def _wait_result(
    executor: JobExecutor, job: JobHandle, timeout_s: float, wanted: threading.Event
) -> Any:
    """The task's ``(result, node)``, waited for in slices while the cycle still wants it.

    Raises:
        JobTimeoutError: it ran past ``timeout_s``.
        Exception: what the task raised.
    """
    deadline = time.monotonic() + timeout_s
    while wanted.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            where = getattr(executor, "address", executor.backend)
            raise JobTimeoutError(f"task on {where} ran past {timeout_s:g} s; cancelled")
        if executor.wait([job], min(remaining, WAIT_SLICE_S)):
            return executor.result(job)
    raise JobTimeoutError("abandoned: nobody waits for this task any more")
