"""The compute budget: how the usable CPUs split into training workers × BLAS threads.

The split of ``cpu_slots`` into workers × BLAS threads is a judgement call; see
:data:`TARGET_BLAS_THREADS` and :func:`compute_budget`. The arithmetic is pure; the
hardware it starts from comes from :func:`forexd.daemon.hardware.detect_hardware`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from forexd.errors import ConfigError

if TYPE_CHECKING:
    from forexd.config import ComputeConfig
    from forexd.daemon.hardware import Hardware

TARGET_BLAS_THREADS = 4
"""BLAS threads per job on machines with room for several jobs. A guess: the small dense
problems forexd trains (tens of features, up to ~10^5 rows) stop speeding up beyond a few
threads, while independent jobs (symbols, folds, search trials) scale almost linearly."""

RESERVE_FROM_CPUS = 4
"""From this many usable CPUs up, one is kept for the event loop by default."""


@dataclass(frozen=True)
class ComputeBudget:
    """How the usable CPUs are split; ``train_workers × blas_threads ≤ cpu_slots`` always.

    Attributes:
        overridden: the ``compute.*`` keys that came from configuration, not the heuristic.
    """

    usable_cpus: int
    reserve: int
    cpu_slots: int
    train_workers: int
    blas_threads: int
    max_concurrent_symbols: int
    overridden: tuple[str, ...] = ()

    @property
    def idle_slots(self) -> int:
        """Slots no worker's BLAS threads cover (at most 3 with the defaults)."""
        return self.cpu_slots - self.train_workers * self.blas_threads

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (for ``forexd hw --json`` and ``ctl status``)."""
        out = asdict(self)
        out["overridden"] = list(self.overridden)
        out["idle_slots"] = self.idle_slots
        return out


def _check_at_least(key: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{key} = {value} is below {minimum}; set it to {minimum} or more")


def compute_budget(
    hw_usable_cpus: int,
    *,
    usable_cpus: int | None = None,
    reserve: int | None = None,
    train_workers: int | None = None,
    blas_threads: int | None = None,
    max_concurrent_symbols: int | None = None,
    n_symbols: int = 1,
) -> ComputeBudget:
    """Split the usable CPUs into worker slots; pure arithmetic.

    The heuristic (a judgement call): up to 7 slots, one job gets them all, since a small
    machine should finish one retrain fast and hold one model's memory at a time; from 8
    slots up, ``train_workers = cpu_slots // 4`` and each gets ``cpu_slots // train_workers``
    BLAS threads (4 to 7), so big machines run many jobs with a few threads each and at most
    3 slots stay idle. 16 CPUs give 3 × 5; 252 CPUs give 62 × 4.

    Args:
        hw_usable_cpus: CPUs detected (:attr:`Hardware.usable_cpus`).
        usable_cpus: override of ``hw_usable_cpus`` (``compute.usable_cpus``).
        reserve: CPUs kept for the event loop; default 1 from 4 usable CPUs up, else 0.
        train_workers: concurrent heavy jobs; default derived from ``blas_threads``.
        blas_threads: BLAS/OpenMP threads per job; default derived as above.
        max_concurrent_symbols: symbols in the heavy phase at once; default
            ``min(train_workers, n_symbols)``, at least 1.
        n_symbols: symbols the daemon trades.

    Raises:
        ConfigError: an override is below its minimum, or ``train_workers × blas_threads``
            exceeds ``cpu_slots``.
    """
    for key, value, minimum in (
        ("compute.usable_cpus", usable_cpus, 1),
        ("compute.reserve_cpus", reserve, 0),
        ("compute.train_workers", train_workers, 1),
        ("compute.blas_threads", blas_threads, 1),
        ("compute.max_concurrent_symbols", max_concurrent_symbols, 1),
    ):
        _check_at_least(key, value, minimum)
    if hw_usable_cpus < 1:
        raise ValueError(f"hw_usable_cpus must be at least 1, got {hw_usable_cpus}")
    overridden = tuple(
        key
        for key, value in (
            ("compute.usable_cpus", usable_cpus),
            ("compute.reserve_cpus", reserve),
            ("compute.train_workers", train_workers),
            ("compute.blas_threads", blas_threads),
            ("compute.max_concurrent_symbols", max_concurrent_symbols),
        )
        if value is not None
    )
    usable = usable_cpus if usable_cpus is not None else hw_usable_cpus
    if reserve is None:
        reserve = 1 if usable >= RESERVE_FROM_CPUS else 0
    # Reserving every CPU still leaves one slot: the loop and one job then share.
    slots = max(1, usable - reserve)
    workers, blas = train_workers, blas_threads
    if blas is None:
        n_jobs = workers if workers is not None else max(1, slots // TARGET_BLAS_THREADS)
        blas = max(1, slots // n_jobs)
    if workers is None:
        # With both derived this gives back n_jobs: slots = 4·n_jobs + r with r < 4.
        workers = max(1, slots // blas)
    if workers * blas > slots:
        given = {k.removeprefix("compute."): "configured" for k in overridden}
        raise ConfigError(
            f"compute.train_workers = {workers} ({given.get('train_workers', 'derived')}) × "
            f"compute.blas_threads = {blas} ({given.get('blas_threads', 'derived')}) "
            f"= {workers * blas} threads exceeds the {slots} CPU slots "
            f"(usable_cpus {usable} − reserve {reserve}); lower compute.train_workers or "
            f"compute.blas_threads so their product is at most {slots}, or unset one of them "
            "to have it derived"
        )
    if max_concurrent_symbols is None:
        max_concurrent_symbols = max(1, min(workers, n_symbols))
    return ComputeBudget(usable, reserve, slots, workers, blas, max_concurrent_symbols, overridden)


def budget_from_config(cfg: ComputeConfig, hw: Hardware, n_symbols: int) -> ComputeBudget:
    """The budget for ``hw`` with the ``[compute]`` overrides applied.

    Raises:
        ConfigError: see :func:`compute_budget`.
    """
    return compute_budget(
        hw.usable_cpus,
        usable_cpus=cfg.usable_cpus,
        reserve=cfg.reserve_cpus,
        train_workers=cfg.train_workers,
        blas_threads=cfg.blas_threads,
        max_concurrent_symbols=cfg.max_concurrent_symbols,
        n_symbols=n_symbols,
    )
