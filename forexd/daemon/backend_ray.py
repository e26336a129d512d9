"""Ray as a :class:`~forexd.models.executor.JobExecutor`: job functions as Ray tasks.

The compute-budget promise holds on every node the way it holds here:

- each task reserves ``num_cpus = blas_threads`` (and one GPU for torch on a GPU), so Ray
  never places more threads on a node than it has CPUs;
- its ``runtime_env`` sets the ``*_NUM_THREADS`` variables, and the task applies the same
  threadpoolctl/torch caps as a local worker (a :class:`ThreadLimiter` per worker process)
  before it runs the job;
- the driver keeps at most ``cluster CPUs // blas_threads`` tasks in flight (re-read on every
  wait, so a lost node shrinks it), and a task never starts a process pool;
- data is sent once (``put`` → object store); a task's arguments are then a reference.

A node that dies takes its running tasks with it; Ray re-runs them elsewhere
(``max_retries``). A task past its timeout is killed with ``ray.cancel(force=True)``.

Loopback: Ray rewrites a bootstrap address of ``127.0.0.1``/``localhost`` to the machine's
own IP when a driver connects, and a cluster whose nodes were started with
``--node-ip-address 127.0.0.1`` does not answer there. Ray's own switch for "this host
has no cluster address" is ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ``ray`` is
imported; :func:`connect` sets it (unless the user did) before the first import when the
address is a loopback one, so a one-machine cluster stays on loopback.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

from forexd.errors import ConfigError, ForexdError
from forexd.models.executor import JobHandle

RAY_INSTALL_HINT = "install the extra: pip install 'forexd[ray]'"
TASK_MAX_RETRIES = 3  # re-runs of a task whose worker or node died (not of a job's own error)
CONNECT_PROBE_TIMEOUT_S = 5.0  # a GCS that does not accept a TCP connection in 5 s is down
LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024  # --ray local: enough for years of H1 arrays
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterUnreachableError(ForexdError):
    """The Ray cluster at the configured address cannot be reached (exit 2)."""


def import_ray() -> Any:
    """``ray``, or a ConfigError with the install hint."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"the ray backend needs Ray; {RAY_INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"ray address {address!r} is not host:port, 'auto' or 'local'; e.g. 10.0.0.5:6379"
        )
    return host.strip("[]"), int(port)


def _probe(address: str) -> None:
    """Fail fast, naming the address, where Ray itself would retry for a minute."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterUnreachableError(
            f"Ray cluster at {address} is unreachable ({exc}); start its head there with "
            f"`ray start --head --port {port}`, check --ray / [compute] ray_address, or set "
            '[compute] ray_fallback = "local" to run locally instead'
        ) from None


_LIMITER: Any = None  # one per Ray worker process: the caps are process-wide


def run_capped(blas_threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Inside a Ray worker: apply the thread caps of a local worker, then run the job."""
    global _LIMITER  # noqa: PLW0603 - the limiter is per process by nature (see threads.py)
    from forexd.daemon.threads import ThreadLimiter

    if _LIMITER is None:
        _LIMITER = ThreadLimiter()
    _LIMITER.apply(blas_threads)
    return fn(*args)


class RayExecutor:
    """Runs job functions as Ray tasks, ``blas_threads`` CPUs each."""

    backend = "ray"

    def __init__(
        self, address: str, *, blas_threads: int, local_cpus: int, use_gpu: bool = False
    ) -> None:
        """Connect to (or, for ``local``, start) a cluster.

        Args:
            address: ``auto`` (``RAY_ADDRESS`` or the cluster started on this machine),
                ``host:port`` of a head node's GCS, or ``local`` (an in-process cluster of
                ``local_cpus`` CPUs).
            blas_threads: CPUs reserved and threads allowed per task.
            local_cpus: CPUs of the ``local`` cluster (the budget's ``train_workers ×
                blas_threads``).
            use_gpu: reserve one GPU per task when the cluster has GPUs (torch kinds).

        Raises:
            ConfigError: Ray missing; a malformed address; the cluster has fewer CPUs than
                one task needs.
            ClusterUnreachableError: nothing answers at ``address``.
        """
        if address not in ("auto", "local"):
            host, _ = _host_port(address)
            if host in LOOPBACK_HOSTS and "ray" not in sys.modules:
                os.environ.setdefault(LOOPBACK_ENV, "0")
            _probe(address)
        ray = import_ray()
        self.address = address
        self.blas_threads = blas_threads
        self._owns = not ray.is_initialized()
        if self._owns:
            self._init(ray, address, local_cpus)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < blas_threads:
            self.close()
            raise ConfigError(
                f"Ray cluster at {address} has {cpus} CPUs; one task needs blas_threads = "
                f"{blas_threads}; add nodes or lower [compute] blas_threads"
            )
        self.slots = cpus // blas_threads
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.num_gpus = 1 if use_gpu and gpus >= 1 else 0
        from forexd.daemon.threads import thread_env

        self._remote = ray.remote(run_capped).options(
            num_cpus=blas_threads,
            num_gpus=self.num_gpus,
            max_retries=TASK_MAX_RETRIES,
            retry_exceptions=False,
            runtime_env={"env_vars": thread_env(blas_threads)},
        )
        self._ray = ray

    @staticmethod
    def _init(ray: Any, address: str, local_cpus: int) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        try:
            if address == "local":
                # address="local", not None: None joins the newest cluster started on this
                # machine (`ray start`, another forexd) and then refuses num_cpus.
                ray.init(
                    address="local",
                    num_cpus=local_cpus,
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    **kwargs,
                )
            else:
                ray.init(address=address, **kwargs)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise ClusterUnreachableError(
                f"cannot connect to the Ray cluster at {address}: {exc}; for 'auto' start one "
                "with `ray start --head` or set RAY_ADDRESS; or give --ray host:port"
            ) from None

    def put(self, value: Any) -> Any:
        """Into the object store once; tasks receive the value."""
        return self._ray.put(value)

    def submit(self, fn: Callable[..., Any], *args: Any, label: str = "") -> JobHandle:
        """Start ``fn(*args)`` as a task reserving ``blas_threads`` CPUs."""
        return JobHandle(self._remote.remote(self.blas_threads, fn, *args), label=label)

    def wait(self, handles: Iterable[JobHandle], timeout_s: float | None) -> list[JobHandle]:
        """Finished tasks (waiting up to ``timeout_s`` for one); re-reads the cluster size."""
        by_ref = {h.ref: h for h in handles}
        if not by_ref:
            return []
        done, _ = self._ray.wait(list(by_ref), num_returns=1, timeout=timeout_s)
        if done:  # collect every other finished one too, without waiting again
            more, _ = self._ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
            done = list(dict.fromkeys([*done, *more]))
        cpus = int(self._ray.cluster_resources().get("CPU", 0))
        self.slots = max(1, cpus // self.blas_threads)
        return [by_ref[r] for r in done]

    def result(self, handle: JobHandle) -> Any:
        """The task's value; a job's own error is re-raised as itself, not wrapped."""
        try:
            return self._ray.get(handle.ref)
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def cancel(self, handle: JobHandle) -> bool:
        """Kill the task's worker (``ray.cancel(force=True)``)."""
        self._ray.cancel(handle.ref, force=True)
        return True

    def describe(self) -> dict[str, Any]:
        """Backend, address, nodes, CPUs/GPUs, per-task reservation and slots."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        resources = self._ray.cluster_resources()
        return {
            "backend": "ray",
            "address": self.address,
            "nodes": len(nodes),
            "cpus": int(resources.get("CPU", 0)),
            "gpus": float(resources.get("GPU", 0)),
            "blas_threads": self.blas_threads,
            "num_gpus_per_task": self.num_gpus,
            "slots": self.slots,
        }

    def close(self) -> None:
        """Disconnect (and stop a ``local`` cluster) if this executor connected."""
        if self._owns and self._ray_initialized():
            import ray

            ray.shutdown()

    def _ray_initialized(self) -> bool:
        ray = sys.modules.get("ray")
        return bool(ray is not None and ray.is_initialized())


def probe_threads() -> dict[str, Any]:
    """What a job sees of its thread caps (run as a job to check a worker's caps)."""
    import numpy as np  # noqa: F401 - loads the BLAS whose pool is reported
    from threadpoolctl import threadpool_info

    from forexd.daemon.threads import THREAD_ENV_VARS, os_thread_count

    torch = sys.modules.get("torch")
    ray = sys.modules.get("ray")
    return {
        "pid": os.getpid(),
        "node": ray.get_runtime_context().get_node_id() if ray is not None else None,
        "env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        "libraries": {lib["internal_api"]: lib["num_threads"] for lib in threadpool_info()},
        "torch_threads": None if torch is None else int(torch.get_num_threads()),
        "os_threads": os_thread_count(),
    }
