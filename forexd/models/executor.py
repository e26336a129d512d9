"""Where learning jobs run: the contract, and the local (thread) implementation.

The search driver, ``forexd train`` and ``forexd backtest --grid`` hand *job functions*
(:mod:`forexd.models.jobs`: plain module-level functions of picklable arguments) to a
:class:`JobExecutor` and never learn where they ran. Two implementations exist:

- :class:`LocalExecutor` (here): ``slots`` worker threads in this process. BLAS releases
  the GIL, and the process-wide thread caps are set once by the caller, exactly as before.
- ``forexd.daemon.backend_ray.RayExecutor``: Ray tasks on a cluster, one CPU reservation of
  ``blas_threads`` per task (the runtime layer owns it, so this layer imports no Ray).

Options weighed: Optuna's own ``n_jobs`` threads (the previous design) cannot run a trial
anywhere but in this process; Ray's Optuna integration (``ray.tune``) would put the study in
Tune's hands and the local path would differ from the Ray one. An ask/tell driver over this
small contract keeps one code path for both.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from forexd.errors import ForexdError


class JobTimeoutError(ForexdError):
    """A job ran past its timeout and was cancelled (or abandoned, where it cannot be)."""


@dataclass(eq=False)
class JobHandle:
    """One submitted job: what the executor needs to wait on, cancel and describe it."""

    ref: Any
    started_monotonic: float = field(default_factory=time.monotonic)
    label: str = ""


class JobExecutor(Protocol):
    """Runs job functions somewhere: threads here, or tasks on a cluster.

    Attributes:
        backend: ``local`` or ``ray``, for reports.
        slots: jobs that may be in flight at once without oversubscribing any CPU.
    """

    backend: str
    slots: int

    def put(self, value: Any) -> Any:
        """Ship ``value`` once (to the object store on a cluster); pass the result to jobs."""

    def submit(self, fn: Callable[..., Any], *args: Any, label: str = "") -> JobHandle:
        """Start ``fn(*args)``; arguments made by :meth:`put` arrive as their value."""

    def wait(self, handles: Iterable[JobHandle], timeout_s: float | None) -> list[JobHandle]:
        """The handles that finished (or failed), waiting up to ``timeout_s`` for one."""

    def result(self, handle: JobHandle) -> Any:
        """The job's return value; raises what the job raised."""

    def cancel(self, handle: JobHandle) -> bool:
        """Stop a job (kill its task where possible); ``True`` if it was stopped."""

    def describe(self) -> dict[str, Any]:
        """Backend, address, slots and resources, JSON-ready."""

    def close(self) -> None:
        """Release threads or the cluster connection."""


class LocalExecutor:
    """``slots`` worker threads in this process (the caller has capped BLAS threads)."""

    backend = "local"

    def __init__(self, slots: int, blas_threads: int) -> None:
        """Create the pool.

        Args:
            slots: jobs at once (``ComputeBudget.train_workers``).
            blas_threads: threads each job's model may use (reported only: the caps are
                process-wide and already applied).

        Raises:
            ValueError: ``slots`` or ``blas_threads`` below 1.
        """
        if slots < 1 or blas_threads < 1:
            raise ValueError(f"slots and blas_threads must be >= 1, got {slots}, {blas_threads}")
        self.slots = slots
        self.blas_threads = blas_threads
        self._pool = cf.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="job")

    def put(self, value: Any) -> Any:
        """Threads share memory: the value itself."""
        return value

    def submit(self, fn: Callable[..., Any], *args: Any, label: str = "") -> JobHandle:
        """Run ``fn(*args)`` in a worker thread."""
        return JobHandle(self._pool.submit(fn, *args), label=label)

    def wait(self, handles: Iterable[JobHandle], timeout_s: float | None) -> list[JobHandle]:
        """Handles whose future is done, waiting up to ``timeout_s`` for the first."""
        by_future = {h.ref: h for h in handles}
        if not by_future:
            return []
        done, _ = cf.wait(by_future, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        return [by_future[f] for f in done]

    def result(self, handle: JobHandle) -> Any:
        """The future's result (re-raises the job's exception)."""
        return handle.ref.result()

    def cancel(self, handle: JobHandle) -> bool:
        """A running thread cannot be stopped; only a job not yet started is cancelled."""
        return bool(handle.ref.cancel())

    def describe(self) -> dict[str, Any]:
        """``{"backend": "local", "slots": ..., "blas_threads": ...}``."""
        return {"backend": "local", "slots": self.slots, "blas_threads": self.blas_threads}

    def close(self) -> None:
        """Wait for running jobs and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def map_jobs(
    executor: JobExecutor,
    fn: Callable[..., Any],
    shared: Any,
    items: list[Any],
    timeout_s: float | None = None,
) -> list[Any]:
    """``[fn(shared, item) for item in items]`` on ``executor``, in order.

    ``shared`` is put once (``executor.put``); at most ``executor.slots`` jobs are in flight.

    Raises:
        JobTimeoutError: a job ran longer than ``timeout_s`` (it is cancelled).
        Exception: the first error a job raised (the jobs still in flight are cancelled).
    """
    ref = executor.put(shared)
    results: list[Any] = [None] * len(items)
    in_flight: dict[JobHandle, int] = {}
    queue = list(enumerate(items))[::-1]
    try:
        while queue or in_flight:
            while queue and len(in_flight) < executor.slots:
                index, item = queue.pop()
                in_flight[executor.submit(fn, ref, item, label=f"item {index}")] = index
            for handle in executor.wait(list(in_flight), timeout_s):
                results[in_flight.pop(handle)] = executor.result(handle)
            now = time.monotonic()
            for handle in in_flight:
                if timeout_s is not None and now - handle.started_monotonic > timeout_s:
                    raise JobTimeoutError(f"{handle.label} ran past {timeout_s:g} s; cancelled")
    finally:
        for handle in in_flight:
            executor.cancel(handle)
    return results


def run_one(
    executor: JobExecutor, fn: Callable[..., Any], *args: Any, timeout_s: float | None, what: str
) -> Any:
    """``fn(*args)`` on ``executor``; past ``timeout_s`` it is cancelled.

    Raises:
        JobTimeoutError: it ran longer than ``timeout_s`` (naming ``what`` and where).
        Exception: what the job raised.
    """
    handle = executor.submit(fn, *args, label=what)
    if not executor.wait([handle], timeout_s):
        executor.cancel(handle)
        where = executor.describe().get("address", executor.backend)
        raise JobTimeoutError(
            f"{what} on {where} ran past [compute] task_timeout_s = {timeout_s:g} s "
            "and was cancelled"
        )
    return executor.result(handle)
