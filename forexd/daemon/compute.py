"""The compute pool: where heavy synchronous work runs without touching the event loop.

Callers take the *symbol semaphore* (``max_concurrent_symbols``: how many symbols may be
in the heavy phase at once) and then a token of the *capacity limiter* (``train_workers``)
that bounds ``anyio.to_thread.run_sync``. BLAS/OpenMP thread caps are process-wide and set
once at start-up (``daemon/threads.py``), so workers × BLAS threads stays within
the budget without toggling caps per call.

No wait is unbounded: the symbol slot and a GPU slot are each waited for at most the
job's wait timeout (by default its run timeout), and a GPU is known by its normalised name
(``cuda`` and ``cuda:0`` are one device with one semaphore).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import anyio
import anyio.to_process

from forexd.errors import ForexdError
from forexd.models.device import device_key

T = TypeVar("T")
Executor = Literal["threads", "processes"]
JOBS_PER_GPU = 1  # CUDA contexts from several threads on one GPU: one at a time by default

_SLOT_HOLDERS: ContextVar[frozenset[int]] = ContextVar("forexd_symbol_slots", default=frozenset())
"""The pools (``id``) whose symbol slot the current task, or a task it started, holds."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Snapshot of the pool for ``ctl status``."""

    train_workers: int
    max_concurrent_symbols: int
    running: int
    waiting_symbols: int
    completed: int
    timed_out: int
    failed: int


class JobTimeoutError(TimeoutError):
    """A heavy job ran past its explicit timeout and was abandoned."""


class DeviceWaitTimeoutError(ForexdError):
    """A job waited too long for its GPU; nothing ran, nothing is stuck."""


class SymbolWaitTimeoutError(ForexdError):
    """A job waited too long for a symbol slot (``max_concurrent_symbols``); nothing ran."""


class ComputePool:
    """Bounded executor for heavy jobs (features, training, evaluation)."""

    def __init__(
        self,
        train_workers: int,
        max_concurrent_symbols: int,
        jobs_per_gpu: int = JOBS_PER_GPU,
        executor: Executor = "threads",
    ) -> None:
        self.executor = executor
        self.jobs_per_gpu = jobs_per_gpu
        self._devices: dict[str, anyio.Semaphore] = {}
        self.limiter = anyio.CapacityLimiter(train_workers)
        self.symbols = anyio.Semaphore(max_concurrent_symbols)
        self._max_symbols = max_concurrent_symbols
        self.completed = 0
        self.timed_out = 0
        self.failed = 0
        self.last_duration_s = 0.0

    @asynccontextmanager
    async def device(self, name: str, *, timeout_s: float) -> AsyncIterator[None]:
        """Hold one of ``jobs_per_gpu`` slots of a GPU (``cpu`` needs none).

        One semaphore per device, acquired before a worker thread is taken and released
        after it returns: models compared in parallel queue for the GPU instead of
        deadlocking on it, and no wait is unbounded.

        Raises:
            DeviceWaitTimeoutError: no slot came free within ``timeout_s``.
        """
        key = device_key(name)  # `cuda` and `cuda:0` are one GPU, so one semaphore
        if key == "cpu":
            yield
            return
        sem = self._devices.setdefault(key, anyio.Semaphore(self.jobs_per_gpu))
        try:
            with anyio.fail_after(timeout_s):
                await sem.acquire()
        except TimeoutError:
            raise DeviceWaitTimeoutError(
                f"waited {timeout_s} s for a slot on {key} ({self.jobs_per_gpu} job(s) at a "
                "time); another job holds it — raise the timeout or lower the parallelism"
            ) from None
        try:
            yield
        finally:
            sem.release()

    @asynccontextmanager
    async def symbol_slot(self, *, timeout_s: float) -> AsyncIterator[None]:
        """Hold one of ``max_concurrent_symbols`` slots, waiting at most ``timeout_s``.

        Re-entrant per task tree: a task that holds a slot, and the tasks it starts while
        holding it, pass through without taking another (one symbol's cycle with K
        challengers is one symbol in the heavy phase, whose K jobs then share the
        ``train_workers`` tokens).

        Raises:
            SymbolWaitTimeoutError: every slot stayed busy for ``timeout_s``.
        """
        holders = _SLOT_HOLDERS.get()
        if id(self) in holders:
            yield
            return
        try:
            with anyio.fail_after(timeout_s):
                await self.symbols.acquire()
        except TimeoutError:
            raise SymbolWaitTimeoutError(
                f"waited {timeout_s} s for one of {self._max_symbols} symbol slot(s) "
                "(compute.max_concurrent_symbols); other symbols' jobs hold them all"
            ) from None
        token = _SLOT_HOLDERS.set(holders | {id(self)})
        try:
            yield
        finally:
            _SLOT_HOLDERS.reset(token)
            self.symbols.release()

    async def run(
        self,
        fn: Callable[[], T],
        *,
        timeout_s: float,
        device: str = "cpu",
        wait_timeout_s: float | None = None,
    ) -> T:
        """Run ``fn`` in a worker thread within the budget, with an explicit timeout.

        With ``executor="threads"`` a timed-out job's thread cannot be killed (Python
        threads are not cancellable); it is abandoned, its result discarded, and its worker
        token freed only when it returns. With ``executor="processes"`` (for GIL-bound
        models) ``fn`` and its result must be picklable, and a timed-out worker process is
        killed. Either way the caller gets :class:`JobTimeoutError` at once.

        ``wait_timeout_s`` (default ``timeout_s``) bounds each wait for a slot before the
        job starts: the symbol slot, then the GPU.

        Raises:
            JobTimeoutError: the job did not finish within ``timeout_s``.
            SymbolWaitTimeoutError: every symbol slot stayed busy for ``wait_timeout_s``.
            DeviceWaitTimeoutError: ``device`` (a GPU) stayed busy for ``wait_timeout_s``.
        """
        wait_s = timeout_s if wait_timeout_s is None else wait_timeout_s
        async with self.symbol_slot(timeout_s=wait_s), self.device(device, timeout_s=wait_s):
            start = time.perf_counter()
            try:
                with anyio.fail_after(timeout_s):
                    if self.executor == "processes":
                        # anyio's workers are fresh interpreters (spawn semantics: never a
                        # fork after CUDA), inherit the *_NUM_THREADS caps, and are killed
                        # on cancellation, so a timed-out job really stops. The job and its
                        # result cross as bytes pickled in threads: anyio pickles and
                        # unpickles on the event loop, and a champion or a trained forest
                        # is megabytes (tens of ms of loop lag each way, benchmarks.md).
                        payload = await anyio.to_thread.run_sync(_dumps, fn)
                        data = await anyio.to_process.run_sync(
                            _run_pickled, payload, cancellable=True, limiter=self.limiter
                        )
                        result = cast("T", await anyio.to_thread.run_sync(pickle.loads, data))
                    else:
                        result = await anyio.to_thread.run_sync(
                            fn, limiter=self.limiter, abandon_on_cancel=True
                        )
            except TimeoutError:
                self.timed_out += 1
                raise JobTimeoutError(f"job exceeded its timeout of {timeout_s} s") from None
            except Exception:
                self.failed += 1
                raise
            self.completed += 1
            self.last_duration_s = time.perf_counter() - start
            return result

    def stats(self) -> PoolStats:
        """Current occupancy and counters."""
        sem = self.symbols.statistics()
        return PoolStats(
            train_workers=int(self.limiter.total_tokens),
            max_concurrent_symbols=self._max_symbols,
            running=int(self.limiter.borrowed_tokens),
            waiting_symbols=sem.tasks_waiting,
            completed=self.completed,
            timed_out=self.timed_out,
            failed=self.failed,
        )


def _dumps(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _run_pickled(payload: bytes) -> bytes:
    """In the worker process: unpickle the job, run it, pickle its result."""
    fn = pickle.loads(payload)
    return _dumps(fn())
