"""The one switch between the local executor and Ray (``[compute] backend``, ``--ray``).

Everything that runs learning jobs asks :func:`make_executor` for a
:class:`~forexd.models.executor.JobExecutor` and hands it job functions; nothing else in
forexd knows which backend it got.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from forexd.config import ComputeConfig
from forexd.daemon.budget import ComputeBudget
from forexd.models.executor import JobExecutor, LocalExecutor

BACKENDS: tuple[str, ...] = ("local", "ray")


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
