"""Compare N models in parallel, deadlock-free by construction (any N, any device).

The fault this rules out: two processes evaluating models on one GPU hung forever. Options
weighed: "sequential for two models or fewer" avoids the hang by avoiding parallelism;
threads cannot be killed when one hangs; a ``fork`` after CUDA was initialised is undefined.
So the comparison runs in **spawned** worker processes only (``get_context("spawn")``), at
most ``workers`` at a time (the compute budget), and every wait is bounded:

* **One semaphore per normalised device** (:func:`~forexd.models.device.device_key`, shared
  with the daemon's compute pool: ``cuda`` and ``cuda:0``
  are one key, so they share one semaphore), a spawn-context ``BoundedSemaphore`` of
  ``slots`` slots (1 per GPU, ``workers`` for the CPU, by default). Workers acquire it
  with a timeout; a model that waits too long is reported ``device_timeout``.
* **A timeout on every evaluation**, counted from the moment the worker holds its slot. A
  worker past it is killed (SIGKILL: a hang in C code ignores anything gentler), the model
  is reported ``timeout``, the slot it held is released by the parent (the worker marks
  ``held[slot]`` right after acquiring and clears it right after releasing; a
  ``BoundedSemaphore`` refuses the rare double release), and a fresh worker takes over the
  remaining models. A worker that dies is reported ``error`` with its exit code.
* **No shared locks between workers**: each has its own job pipe and result pipe; the parent
  waits on all result pipes with a timeout (``connection.wait``). A worker killed while
  writing can corrupt only its own pipe, which is discarded with it.

Each model is evaluated by one batched prediction over all bars and traded in the backtest
simulation (:mod:`forexd.rl.sim`) with the same costs and size, so models of any kind
— classifiers through their threshold policy, agents through their actions — are ranked on
the same P&L. Ranking: net P&L, then Sharpe.

With a ``window`` (a training cycle judging its champion and K challengers,
:mod:`forexd.daemon.challengers`) every job scores one model on that window instead
(:mod:`forexd.rl.window_eval`) and the ranking is by that score. ``cancel`` (an event the
caller sets when it stops waiting) kills every worker at the next poll.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from forexd.brokers.ledger import CostModel
from forexd.models.device import device_key
from forexd.models.errors import ModelError
from forexd.models.trainconfig import Candles
from forexd.rl.compare_worker import ModelRef, WorkerSetup, worker_main
from forexd.rl.window_eval import WindowPlan

STARTUP_TIMEOUT_S = 120.0
"""A worker must take its first job's device slot within this plus the acquire timeout
(guessed: a spawned interpreter importing numpy, pandas, sklearn and torch on a loaded
2-core machine takes 5-30 s)."""
POLL_S = 0.5  # longest single wait of the parent loop; deadlines are checked in between
JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """One model's result: ``status`` ok, timeout, device_timeout or error."""

    name: str
    status: str
    seconds: float
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "name": self.name,
            "status": self.status,
            "rank": self.rank,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            **self.result,
        }


@dataclass(frozen=True, slots=True)
class CompareResult:
    """Every model's outcome, ranked ones first (best first), then the failures."""

    outcomes: tuple[Outcome, ...]
    device: str
    workers: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "device": self.device,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "models": [o.to_dict() for o in self.outcomes],
        }


@dataclass(slots=True)
class _Worker:
    slot: int
    process: Any
    jobs: Connection
    results: Connection
    job: int | None = None
    dispatched: float = 0.0
    acquired: float | None = None


def _stop(w: _Worker) -> None:
    """Tell an idle worker to exit; kill it if it does not."""
    with contextlib.suppress(OSError):  # its pipe may be gone with a dead worker
        w.jobs.send(None)
    w.process.join(JOIN_TIMEOUT_S)
    if w.process.is_alive():
        w.process.kill()
        w.process.join(JOIN_TIMEOUT_S)


class CompareCancelledError(ModelError):
    """The caller stopped waiting (its ``cancel`` event was set); every worker was killed."""


def _rank(outcomes: list[Outcome], window: WindowPlan | None) -> tuple[Outcome, ...]:
    if window is None:
        ok = [o for o in outcomes if o.status == "ok"]
        ok.sort(key=lambda o: (-o.result["pnl"], -o.result["metrics"]["sharpe"], o.name))
    else:  # a cycle's window: by score; a model that could not be scored is not ranked
        sign = 1.0 if window.lower_is_better else -1.0
        ok = [o for o in outcomes if o.status == "ok" and o.result.get("score") is not None]
        ok.sort(key=lambda o: sign * o.result["score"])  # stable: ties keep the given order
    ranked = [
        Outcome(o.name, o.status, o.seconds, o.result, o.error, i + 1) for i, o in enumerate(ok)
    ]
    chosen = {id(o) for o in ok}
    return tuple(ranked + [o for o in outcomes if id(o) not in chosen])


def compare_models(
    refs: Sequence[ModelRef],
    candles: Candles,
    *,
    symbol: str,
    device: str = "cpu",
    workers: int = 1,
    threads_per_worker: int = 1,
    timeout_s: float = 300.0,
    acquire_timeout_s: float | None = None,
    slots: int | None = None,
    costs: CostModel | None = None,
    units: int = 10_000,
    initial_balance: float = 100_000.0,
    periods_per_year: float = 6240.0,
    window: WindowPlan | None = None,
    cancel: threading.Event | None = None,
) -> CompareResult:
    """Evaluate every model on ``candles`` in spawned workers and rank them (module note).

    Args:
        refs: the models (any number).
        candles: the bars to trade.
        symbol: their instrument.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (resolved by the caller).
        workers: worker processes at most (``ComputeBudget.train_workers``).
        threads_per_worker: BLAS/torch threads each (``blas_threads``).
        timeout_s: longest evaluation of one model once it holds its device slot.
        acquire_timeout_s: longest wait for a device slot (default ``timeout_s``).
        slots: models evaluated on the device at once (default: 1 on a GPU, ``workers``
            on the CPU).
        costs: the backtest's costs (default: none).
        units: position size.
        initial_balance: account start, USD.
        periods_per_year: annualises the Sharpe ratio.
        window: score every model on this window of ``candles`` instead of trading them
            all (see :mod:`forexd.rl.window_eval`).
        cancel: set by the caller to stop: the workers are killed at the next poll.

    Raises:
        ModelError: no model, a bad device name or a non-positive limit.
        CompareCancelledError: ``cancel`` was set.
    """
    if not refs:
        raise ModelError("compare: give at least one model")
    if workers < 1 or threads_per_worker < 1 or (slots or 1) < 1 or timeout_s <= 0:
        raise ModelError("compare: workers, threads, slots and timeout must be positive")
    key = device_key(device)
    acquire = timeout_s if acquire_timeout_s is None else acquire_timeout_s
    n_workers = min(workers, len(refs))
    ctx = multiprocessing.get_context("spawn")
    sem = ctx.BoundedSemaphore(slots or (1 if key != "cpu" else n_workers))
    held = ctx.Array("b", n_workers, lock=False)
    setup = WorkerSetup(
        candles, symbol, costs or CostModel(), units, initial_balance, periods_per_year,
        key if key != "cpu" else "cpu", threads_per_worker, acquire, window,
    )  # fmt: skip
    started = time.perf_counter()
    pending: deque[int] = deque(range(len(refs)))
    outcomes: dict[int, Outcome] = {}
    pool: dict[int, _Worker | None] = dict.fromkeys(range(n_workers))

    def spawn(slot: int) -> _Worker:
        job_r, job_w = ctx.Pipe(duplex=False)
        res_r, res_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=worker_main, args=(slot, job_r, res_w, sem, held, setup), daemon=True
        )
        proc.start()
        job_r.close()
        res_w.close()
        return _Worker(slot, proc, job_w, res_r)

    def finish(w: _Worker, status: str, payload: Any) -> None:
        assert w.job is not None
        ok = status == "ok"
        outcomes[w.job] = Outcome(
            refs[w.job].name,
            status,
            time.perf_counter() - w.dispatched,
            payload if ok else {},
            None if ok else str(payload),
        )
        w.job, w.acquired = None, None

    def kill(w: _Worker, status: str, reason: str) -> None:
        w.process.kill()
        w.process.join(JOIN_TIMEOUT_S)
        if held[w.slot]:
            held[w.slot] = 0
            # The slot the killed worker held; ValueError: it had released it itself just
            # before dying (a BoundedSemaphore refuses to go above its bound).
            with contextlib.suppress(ValueError):
                sem.release()
        finish(w, status, reason)
        w.jobs.close()
        w.results.close()
        pool[w.slot] = None

    try:
        while pending or any(w is not None and w.job is not None for w in pool.values()):
            if cancel is not None and cancel.is_set():
                for w in pool.values():
                    if w is not None and w.job is not None:
                        kill(w, "cancelled", "the comparison was cancelled")
                raise CompareCancelledError("the comparison was cancelled; its workers were killed")
            for slot, idle in list(pool.items()):
                if pending and (idle is None or idle.job is None):
                    w = idle or spawn(slot)
                    pool[slot] = w
                    w.job, w.dispatched, w.acquired = pending.popleft(), time.perf_counter(), None
                    w.jobs.send((w.job, refs[w.job]))
            busy = [w for w in pool.values() if w is not None and w.job is not None]
            by_conn = {id(b.results): b for b in busy}
            for conn in wait([b.results for b in busy], timeout=POLL_S):
                worker = by_conn[id(conn)]
                try:
                    msg = worker.results.recv()
                except (EOFError, OSError):
                    worker.process.join(JOIN_TIMEOUT_S)
                    kill(worker, "error", f"worker exited (code {worker.process.exitcode})")
                    continue
                if msg[0] == "acquired":
                    worker.acquired = time.perf_counter()
                else:
                    finish(worker, str(msg[2]), msg[3])
            now = time.perf_counter()
            for worker in busy:
                if worker.job is None:
                    continue
                if worker.acquired is not None and now - worker.acquired > timeout_s:
                    kill(worker, "timeout", f"evaluation exceeded its timeout of {timeout_s} s")
                elif (
                    worker.acquired is None
                    and now - worker.dispatched > STARTUP_TIMEOUT_S + acquire
                ):
                    kill(worker, "timeout", "the worker did not start the evaluation in time")
    finally:
        for left in pool.values():
            if left is not None:
                _stop(left)
    ordered = [outcomes[i] for i in range(len(refs))]
    return CompareResult(_rank(ordered, window), key, n_workers, time.perf_counter() - started)
