"""K challengers per training cycle: trained in parallel, judged together, the best promoted.

With ``challengers = 1`` a cycle is what it always was (:meth:`ModelTrainer._run
<forexd.daemon.trainer.ModelTrainer._run>`): one training job that also judges its
challenger against the champion, inside the job, with no extra process. Options weighed for
K > 1: judging each challenger in its own training job (as for K = 1) would score the
champion K times and runs in threads that cannot be killed when a model hangs; judging them
on the event loop or in a thread blocks or cannot be stopped. So with K > 1:

1. **Training**: K jobs in the compute pool, one per seed ``seed .. seed + K - 1``
   (``ModelTrainer._train_challenger`` each), in one task group. The pool bounds them
   (worker tokens, GPU slots, every wait with a timeout); the cycle holds one symbol slot
   for all of them (the slot is re-entrant for the jobs it starts) and keeps at most
   ``train_workers`` of its jobs in the pool at once so its own jobs never queue there
   long enough to hit the pool's wait timeout. The jobs get
   no champion, so nothing is judged inside them. A job that fails or times out is
   reported and the others go on; if every job fails, the cycle fails with the first
   job's error, as a one-challenger cycle would.
2. **Judging**: the champion and every trained challenger are scored on the cycle's latest
   window in spawned workers (:func:`forexd.rl.compare.compare_models` with a
   :class:`~forexd.rl.window_eval.WindowPlan`): the champion as it is, each challenger as
   its refit on the bars before the window; one semaphore per normalised device, a timeout
   on every acquire and evaluation, a hung evaluation killed and reported. While its
   workers run the cycle holds one symbol slot, the device's pool slot (a GPU) and one
   compute-pool worker token per worker: the first waited for with a timeout, the others
   only taken if free at once, so two cycles never wait on each other's tokens; that is
   how the workers stay within ``train_workers`` × ``blas_threads``.
3. **Verdict**: the best-scored challenger against the champion by the one-challenger rule
   (:func:`~forexd.models.promotion.promotion_decision` on log loss; for agents the return
   gain against ``promote_margin``). A challenger whose evaluation failed or timed out is
   never promoted; a champion whose evaluation failed is kept (nothing showed it worse).
   Without a champion the best challenger is promoted. Every trained challenger is
   registered with its own comparison (status, score, rank).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio

from forexd.daemon.compute import JobTimeoutError
from forexd.daemon.trainjob import CycleHandle, read_training_candles
from forexd.daemon.verdict import CHAMPION_REF, Verdict, decide, entry, too_few_rows
from forexd.errors import ForexdError
from forexd.models.promotion import MIN_COMPARE_ROWS
from forexd.strategies.ml_params import MlParams

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from forexd.daemon.paths import DaemonPaths
    from forexd.daemon.training import TrainServices
    from forexd.models.promotion import Champion
    from forexd.models.trainer import CycleResult
    from forexd.storage.model_registry import ModelRecord, ModelRegistry

REFIT = "forexd.rl.window_eval:refit"
"""``module:function`` the evaluation workers refit a challenger with (tests name one that
hangs, as ``forexd models compare`` tests name a loader that does)."""


class WorkerWaitTimeoutError(ForexdError):
    """The evaluation waited too long for a compute-pool worker token; nothing ran."""


@dataclass(slots=True)
class Trained:
    """One challenger's training: its seed and either its result and row or its failure."""

    seed: int
    params: MlParams
    result: CycleResult | None = None
    record: ModelRecord | None = None
    status: str = "ok"
    error: str | None = None
    exc: BaseException | None = None

    @property
    def model_id(self) -> str:
        """Its registry id (only once trained)."""
        assert self.record is not None
        return self.record.model_id


# -- training ----------------------------------------------------------------------------


def challenger_params(params: MlParams) -> list[MlParams]:
    """The K challengers' parameters: ``params`` with seeds ``seed .. seed + K - 1``."""
    return [params.model_copy(update={"seed": params.seed + i}) for i in range(params.challengers)]


class ChallengerHandle(CycleHandle):
    """One challenger's view of the cycle's handle: abandoned with it, reports ``training``
    through it (``evaluating`` comes once, from the cycle) and its share of the progress."""

    def __init__(self, parent: CycleHandle, on_progress: Callable[[int, int], None]) -> None:
        super().__init__(parent.cycle_id, parent.phase, on_progress)
        self._parent = parent

    @property
    def abandoned(self) -> bool:
        """Whether this challenger or the whole cycle was abandoned."""
        return self._parent.abandoned or super().abandoned

    def check(self) -> None:
        """Raise once the cycle (or this challenger) was abandoned."""
        self._parent.check()
        super().check()

    def phase(self, name: str) -> None:
        """Only ``training`` is forwarded (the cycle reports ``evaluating`` itself)."""
        if name == "training":
            super().phase(name)


class _Progress:
    """Sums the challengers' walk-forward progress into the cycle's (worker threads)."""

    def __init__(self, handle: CycleHandle, n: int, steps: int) -> None:
        self._handle = handle
        self._done = [0] * n
        self._total = [steps] * n  # known up front: the total never grows while it runs
        self._lock = threading.Lock()

    def update(self, i: int, done: int, total: int) -> None:
        with self._lock:
            self._done[i], self._total[i] = done, total
            done_all, total_all = sum(self._done), sum(self._total)
        self._handle.progress(done_all, total_all)


TrainOne = Callable[[CycleHandle, MlParams], Awaitable[tuple["CycleResult", "ModelRecord"]]]


async def train_challengers(
    train_one: TrainOne,
    handle: CycleHandle,
    trained: Sequence[Trained],
    *,
    parallel: int,
    timeout_s: float,
    log: Any,
) -> None:
    """Train each of ``trained`` (filled in: result and row, or the failure), at most
    ``parallel`` in the pool at once (module note). Failures are recorded, not raised;
    cancellation is raised.
    """
    steps = trained[0].params.walk_forward.n_folds + 1  # the folds and the final fit
    progress = _Progress(handle, len(trained), steps)
    gate = anyio.Semaphore(parallel)
    # Each holder leaves the gate within its pool wait + run timeouts: the gate's wait is
    # bounded by construction; the timeout only makes the bound explicit.
    rounds = math.ceil(len(trained) / parallel)
    gate_timeout_s = rounds * 2 * timeout_s + 60.0

    async def one(i: int) -> None:
        t = trained[i]
        sub = ChallengerHandle(handle, functools.partial(progress.update, i))
        try:
            try:
                with anyio.fail_after(gate_timeout_s):
                    await gate.acquire()
            except TimeoutError:
                raise JobTimeoutError(f"waited {gate_timeout_s} s to start") from None
            try:
                t.result, t.record = await train_one(sub, t.params)
            finally:
                gate.release()
        except JobTimeoutError as exc:
            t.status, t.error, t.exc = "timeout", f"training timed out: {exc}", exc
        except ForexdError as exc:
            t.status, t.error, t.exc = "error", f"{type(exc).__name__}: {exc}", exc
        except Exception as exc:  # a bug in one challenger: logged in full, the others go on
            log.exception("challenger_crashed", seed=t.seed)
            t.status, t.error, t.exc = "error", f"internal error: {exc!r}", exc
        if t.error is not None:
            log.warning("challenger_failed", seed=t.seed, status=t.status, error=t.error)

    async with anyio.create_task_group() as tg:
        for i in range(len(trained)):
            tg.start_soon(one, i)


# -- judging -----------------------------------------------------------------------------


@asynccontextmanager
async def borrowed_workers(
    limiter: anyio.CapacityLimiter, want: int, *, timeout_s: float
) -> AsyncIterator[int]:
    """Hold between 1 and ``want`` of the pool's worker tokens; yields how many.

    The first token is waited for (at most ``timeout_s``); the others are taken only if
    free now, so no cycle holds tokens while it waits for more (no hold-and-wait).

    Raises:
        WorkerWaitTimeoutError: no token came free within ``timeout_s``.
    """
    borrowers: list[object] = [object()]
    try:
        with anyio.fail_after(timeout_s):
            await limiter.acquire_on_behalf_of(borrowers[0])
    except TimeoutError:
        raise WorkerWaitTimeoutError(
            f"waited {timeout_s} s for a compute worker (compute.train_workers) to judge the "
            "challengers; other jobs hold them all"
        ) from None
    try:
        while len(borrowers) < want:
            borrower = object()
            try:
                limiter.acquire_on_behalf_of_nowait(borrower)
            except anyio.WouldBlock:
                break
            borrowers.append(borrower)
        yield len(borrowers)
    finally:
        for borrower in borrowers:
            limiter.release_on_behalf_of(borrower)


async def judge(
    ctx: TrainServices,
    symbol: str,
    times: npt.NDArray[np.int64],
    trained: Sequence[Trained],
    champion: Champion | None,
    champion_path: str | None,
    params: MlParams,
    device: str,
) -> Verdict:
    """Score the champion and the trained challengers on the latest window (module note).

    Raises:
        SymbolWaitTimeoutError, DeviceWaitTimeoutError, WorkerWaitTimeoutError: a slot or
            a worker token stayed busy for ``train_timeout_s``; nothing was judged.
        DataError: the candles cannot be read again.
    """
    pool, wait_s = ctx.pool, params.train_timeout_s
    want = min(ctx.budget.train_workers, len(trained) + (champion is not None))
    cancel = threading.Event()
    async with (
        pool.symbol_slot(timeout_s=wait_s),
        pool.device(device, timeout_s=wait_s),
        borrowed_workers(pool.limiter, want, timeout_s=wait_s) as workers,
    ):
        job = functools.partial(
            judge_in_thread, ctx.paths, symbol, times, trained, champion, champion_path,
            params, device, workers, ctx.budget.blas_threads, cancel,
        )  # fmt: skip
        try:
            return await anyio.to_thread.run_sync(job, abandon_on_cancel=True)
        finally:
            cancel.set()  # cancelled: the thread kills its workers at its next poll


def judge_in_thread(
    paths: DaemonPaths,
    symbol: str,
    times: npt.NDArray[np.int64],
    trained: Sequence[Trained],
    champion: Champion | None,
    champion_path: str | None,
    params: MlParams,
    device: str,
    workers: int,
    threads: int,
    cancel: threading.Event,
) -> Verdict:
    """The blocking half of :func:`judge`: plan the window, run the workers, decide."""
    from forexd.rl.compare import compare_models
    from forexd.rl.compare_worker import ModelRef
    from forexd.rl.trainer import costs_of
    from forexd.rl.window_eval import plan_window

    candles, _, _ = read_training_candles(paths.db, symbol, times, params.lookback_candles)
    data = candles.tail(params.lookback_candles)
    first = trained[0].result
    assert first is not None
    plan = plan_window(
        params, data, symbol=symbol,
        champion_to_ts=None if champion is None else champion.data_to_ts,
        train_rows=first.train_rows, test_rows=first.walk_forward.config.fold_test_size,
    )  # fmt: skip
    champion_id = None if champion is None else champion.model_id
    ids = [(t.model_id, t.seed) for t in trained]
    if plan.rows < MIN_COMPARE_ROWS:  # nothing (new) to judge by: no worker is started
        return too_few_rows(plan, ids, champion_id, params.promote_margin)
    refs = [ModelRef(t.model_id, None, config=t.params, refit=REFIT) for t in trained]
    if champion is not None:
        refs.append(ModelRef(CHAMPION_REF, champion_path))
    result = compare_models(
        refs, data, symbol=symbol, device=device, workers=workers, threads_per_worker=threads,
        timeout_s=params.train_timeout_s, costs=costs_of(params), units=params.units,
        window=plan, cancel=cancel,
    )  # fmt: skip
    verdict = decide(plan, result.outcomes, ids, champion_id, params.promote_margin)
    evaluation = verdict.evaluation | {
        "workers": result.workers,
        "device": result.device,
        "seconds": round(result.seconds, 3),
    }
    return replace(verdict, evaluation=evaluation)


async def discard(registry: ModelRegistry, records: Sequence[ModelRecord]) -> None:
    """Delete the artifacts of challengers that will not be registered (even when the
    cycle is being cancelled: shielded, off the loop)."""

    def unlink() -> None:
        for record in records:
            registry.artifact_path(record).unlink(missing_ok=True)

    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(unlink)


def failed_entries(trained: Sequence[Trained]) -> list[dict[str, Any]]:
    """What the cycle reports about the challengers whose training failed."""
    return [
        entry(None, t.seed, t.status, error=t.error, phase="training")
        for t in trained
        if t.record is None
    ]


async def train_and_judge(
    ctx: TrainServices,
    symbol: str,
    times: npt.NDArray[np.int64],
    train_one: TrainOne,
    handle: CycleHandle,
    params: MlParams,
    registry: ModelRegistry,
    champion: Champion | None,
    device: str,
    log: Any,
) -> tuple[list[Trained], Verdict]:
    """Train the K challengers, judge them with the champion and register every trained
    one with its comparison; promotion is the caller's (module note).

    Returns:
        Every challenger (trained or failed, in seed order) and the verdict; the entries of
        failed trainings are added to ``verdict.entries``.

    Raises:
        Whatever the first challenger's training raised, when none was trained; the
        judging's wait timeouts; StorageError from a registration (the artifacts of the
        challengers left unregistered are deleted, on cancellation too).
    """
    trained = [Trained(p.seed, p) for p in challenger_params(params)]
    registered: set[str] = set()
    try:
        # One symbol in the heavy phase: the slot is re-entrant for the jobs started under
        # it (ComputePool.symbol_slot), so the K jobs share it and the worker tokens.
        async with ctx.pool.symbol_slot(timeout_s=params.train_timeout_s):
            await train_challengers(
                train_one, handle, trained, parallel=ctx.budget.train_workers,
                timeout_s=params.train_timeout_s, log=log,
            )  # fmt: skip
            done = [t for t in trained if t.record is not None]
            if not done:  # as a one-challenger cycle whose job failed
                raise trained[0].exc or ForexdError("no challenger was trained")
            handle.phase("evaluating")
            path = None
            if champion is not None:
                path = str(registry.artifact_path(symbol, champion.model_id))
            verdict = await judge(ctx, symbol, times, done, champion, path, params, device)
        for t in done:
            assert t.record is not None
            comparison = {"comparison": verdict.comparisons[t.model_id]}
            t.record = replace(t.record, metrics=t.record.metrics | comparison)
            await registry.aregister(t.record)
            registered.add(t.model_id)
    except BaseException:  # cancelled too: no file without its row
        left = [t.record for t in trained if t.record and t.record.model_id not in registered]
        await discard(registry, left)
        raise
    entries = sorted(verdict.entries + failed_entries(trained), key=lambda e: int(e["seed"]))
    return trained, replace(verdict, entries=entries)
