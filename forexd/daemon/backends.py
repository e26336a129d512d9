"""The one switch between the local executor and Ray (``[compute] backend``, ``--ray``).

Everything that runs learning jobs asks :func:`make_executor` for a
:class:`~forexd.models.executor.JobExecutor` and hands it job functions; nothing else in
forexd knows which backend it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from forexd.config import ComputeConfig
from forexd.daemon.budget import ComputeBudget
from forexd.models.executor import JobExecutor, LocalExecutor

BACKENDS: tuple[str, ...] = ("local", "ray")
T = TypeVar("T")


def make_executor(
    cfg: ComputeConfig,
    budget: ComputeBudget,
    *,
    ray_address: str | None = None,
    use_gpu: bool = False,
    warn: Callable[[str], None] | None = None,
) -> JobExecutor:
    """The executor the configuration (or ``--ray ADDRESS``, which wins) asks for.

    Args:
        cfg: the ``[compute]`` section.
        budget: this machine's budget (local slots; ``local`` Ray cluster size; BLAS threads).
        ray_address: ``--ray``: use Ray at this address whatever ``backend`` says.
        use_gpu: jobs train torch models on a GPU (one GPU per Ray task where there are).
        warn: told when an unreachable cluster falls back to local (``ray_fallback``);
            default: a ``warning:`` line on stderr (the one-shot commands).

    Raises:
        ClusterUnreachableError: the cluster cannot be reached and ``ray_fallback = "error"``.
        ConfigError: Ray is not installed; a malformed address.
    """
    if ray_address is None and cfg.backend == "local":
        return LocalExecutor(budget.train_workers, budget.blas_threads)
    from forexd.daemon.backend_ray import ClusterUnreachableError, RayExecutor

    address = ray_address or cfg.ray_address
    try:
        return RayExecutor(
            address,
            blas_threads=budget.blas_threads,
            local_cpus=budget.train_workers * budget.blas_threads,
            use_gpu=use_gpu,
        )
    except ClusterUnreachableError as exc:
        if cfg.ray_fallback != "local":
            raise
        message = f'{exc}; running locally instead ([compute] ray_fallback = "local")'
        if warn is None:
            print(f"warning: {message}", file=sys.stderr)
        else:
            warn(message)
        return LocalExecutor(budget.train_workers, budget.blas_threads)


def connect_cluster(
    cfg: ComputeConfig, budget: ComputeBudget, warn: Callable[[str], None]
) -> tuple[JobExecutor | None, dict[str, Any]]:
    """The daemon's remote executor: Ray when ``backend = "ray"`` and reachable (blocking).

    The daemon's own retraining runs in its compute pool unless a cluster is configured, so
    there is no local executor to make: ``None`` means "the pool", for ``backend = "local"``
    and for an unreachable cluster with ``ray_fallback = "local"`` (``warn`` is told).

    Returns:
        ``(executor or None, its description for the log)``.

    Raises:
        ClusterUnreachableError: the cluster cannot be reached and ``ray_fallback = "error"``.
        ConfigError: Ray is not installed; a malformed address; too few CPUs for one task.
    """
    if cfg.backend != "ray":
        return None, {"backend": "local"}
    _keep_daemon_signals()
    executor = make_executor(cfg, budget, warn=warn)
    if executor.backend != "ray":  # fell back: the pool trains, this executor is not needed
        executor.close()
        return None, {"backend": "local", "fallback_from": cfg.ray_address}
    return executor, executor.describe()


DAEMON_SIGNAL_NOTE = "SIGTERM handler is not set because current thread is not the main thread"


def _keep_daemon_signals() -> None:
    """The daemon's signals stay the daemon's once it is a Ray driver.

    Ray's C++ core installs a failure signal handler in every driver that prints
    ``*** SIGTERM received ...`` and a stack address on each SIGTERM (it then calls the
    daemon's own handler, so the stop stays clean, but the journal reads like a crash);
    ``RAY_DISABLE_FAILURE_SIGNAL_HANDLER=1``, read when ``ray`` is imported, keeps it out
    (unless the user set the variable). ``ray.init`` runs in a worker thread (it blocks), so
    Ray warns that it set no SIGTERM handler of its own — which is what the daemon wants:
    that one line is dropped.
    """
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: DAEMON_SIGNAL_NOTE not in record.getMessage()
    )


class ClusterOwner:
    """Makes and closes the daemon's cluster connection on one thread that outlives it.

    ``ray_address = "local"`` starts Ray's own processes (GCS, raylet) as children that
    Linux kills when the *thread* that started them ends: Ray sets ``PR_SET_PDEATHSIG``, which
    is per thread. Connected from a short-lived worker thread, the cluster died with the
    thread (seen: the first task hung, then "Failed to connect to GCS within 60 seconds" and
    the daemon exited 1). So the calls that start and stop Ray run here, on one daemon thread
    kept until :meth:`stop`, and still off the event loop. A cancelled caller (a stop signal
    during start-up) stops waiting at once; the call goes on in the background and its result
    is dropped, as with :func:`~forexd.daemon.offloop.run_abandonable`. asyncio only.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the owner thread; its result, or what it raised."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="forexd-ray", daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(ok: bool, value: Any) -> None:
            if future.done():  # the caller was cancelled meanwhile
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def work() -> None:
            result: object
            try:
                result, ok = fn(*args), True
            except BaseException as exc:  # handed to the caller, which decides
                result, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(deliver, ok, result)

        self._calls.put(work)
        return await future

    def stop(self) -> None:
        """Let the thread end once the calls queued before have run."""
        if self._thread is not None:
            self._calls.put(None)

    def _serve(self) -> None:
        while (work := self._calls.get()) is not None:
            work()
