"""The compute budget: which CPUs forexd may use, how it splits them, and the thread caps.

Options weighed:

* **How many CPUs.** ``os.cpu_count()`` counts the host, not what this process may use; in a
  container or under ``taskset`` that is how a 2-CPU job ends up with 64 BLAS threads. The
  affinity mask is the hard limit and the cgroup CPU quota the soft one (a quota of 1.5 CPUs
  lets two threads run half the time each), so ``usable_cpus = min(affinity, ceil(quota))``.
* **Finding the quota.** Parsing ``/proc/self/mountinfo`` (as Go's automaxprocs does) finds
  cgroup hierarchies mounted anywhere; every container runtime and systemd mount them under
  ``/sys/fs/cgroup``, so this module looks there (the root is a parameter, which is also how
  the tests feed it fake files), walks from the process's own cgroup up to the root and keeps
  the tightest limit. A malformed file is skipped with a note, never a crash: a budget that
  is slightly too generous is better than a daemon that will not start.
* **GPUs.** Importing torch costs seconds and hundreds of MB, so the daemon does not import it
  just to count GPUs: ``gpus`` is ``None`` ("not probed") unless torch is already imported, or
  the caller (``forexd hw``, a short-lived process) asks for the import. The count comes from
  ``torch.cuda.device_count()``, which asks NVML first and creates no CUDA context, so a later
  ``fork`` stays safe (only where NVML is missing does torch fall back to the CUDA runtime,
  and the daemon spawns, never forks, its workers anyway); nvidia-smi is never run.
* **Caps.** BLAS/OpenMP thread counts are process-wide. Toggling them per job with
  ``threadpool_limits`` as a context manager races as soon as two jobs run in two threads, so
  the caps are set once, to ``blas_threads``, and the worker count is chosen to fit.
* **The split** of ``cpu_slots`` into workers × BLAS threads is a judgement call; see
  :data:`TARGET_BLAS_THREADS` and :func:`compute_budget`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import psutil
from rich.table import Table
from threadpoolctl import ThreadpoolController, threadpool_info

from forexd.errors import ConfigError

if TYPE_CHECKING:
    from forexd.config import ComputeConfig

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

TARGET_BLAS_THREADS = 4
"""BLAS threads per job on machines with room for several jobs. A guess: the small dense
problems forexd trains (tens of features, up to ~10^5 rows) stop speeding up beyond a few
threads, while independent jobs (symbols, folds, search trials) scale almost linearly."""

RESERVE_FROM_CPUS = 4
"""From this many usable CPUs up, one is kept for the event loop by default."""

TORCH_INTEROP_THREADS = 1
"""torch's inter-op pool only serves ``torch.jit.fork``-style parallelism, which forexd does
not use; one thread keeps every job within ``blas_threads`` CPUs."""

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_FRAMEWORK_THREADS",
    "NUMEXPR_NUM_THREADS",
)


# --------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class CpuQuota:
    """The tightest cgroup CPU quota on the path from this process's cgroup to the root.

    Attributes:
        cpus: quota ÷ period, e.g. ``1.5``; ``None`` when no quota applies.
        path: the file that set that quota; ``None`` when none did.
        checked: every quota file read, tightest or not.
        notes: why there is no quota, or which files were skipped and why.
    """

    cpus: float | None
    path: str | None
    checked: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class _MalformedError(Exception):
    """A cgroup file whose content does not parse; its message says why."""


def _read_small(path: Path) -> str | None:
    """The file's text, or ``None`` when it does not exist."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _MalformedError(f"{path}: unreadable ({exc})") from None


def _positive_int(path: Path, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _MalformedError(f"{path}: {text!r} is not an integer") from None
    if value <= 0:
        raise _MalformedError(f"{path}: {value} is not positive")
    return value


def _v2_limit(directory: Path) -> tuple[Path, float | None] | None:
    """``cpu.max`` ("max 100000" = no quota, "150000 100000" = 1.5 CPUs)."""
    path = directory / "cpu.max"
    text = _read_small(path)
    if text is None:
        return None
    fields = text.split()
    if fields[:1] == ["max"] and len(fields) <= 2:
        return path, None
    if len(fields) != 2:
        raise _MalformedError(f"{path}: expected '<quota|max> <period>', got {text!r}")
    return path, _positive_int(path, fields[0]) / _positive_int(path, fields[1])


def _v1_limit(directory: Path) -> tuple[Path, float | None] | None:
    """``cpu.cfs_quota_us`` (-1 = no quota) over ``cpu.cfs_period_us``."""
    quota_path = directory / "cpu.cfs_quota_us"
    quota_text = _read_small(quota_path)
    if quota_text is None:
        return None
    if quota_text == "-1":
        return quota_path, None
    quota = _positive_int(quota_path, quota_text)
    period_path = directory / "cpu.cfs_period_us"
    period_text = _read_small(period_path)
    if period_text is None:
        raise _MalformedError(f"{period_path}: missing next to {quota_path.name}")
    return quota_path, quota / _positive_int(period_path, period_text)


def _v1_cpu_mount(root: Path) -> Path | None:
    """The v1 hierarchy holding the ``cpu`` controller ("cpu", "cpu,cpuacct", ...)."""
    if (root / "cpu").is_dir():
        return root / "cpu"
    try:
        candidates = sorted(root.iterdir())
    except OSError:
        return None
    return next((p for p in candidates if "cpu" in p.name.split(",") and p.is_dir()), None)


def _v2_mount(root: Path) -> Path | None:
    """Unified hierarchy: the root itself, or ``unified/`` on hybrid (v1 + v2) hosts."""
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


def _cgroup_dirs(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup directory and its ancestors up to ``mount``, leaf first."""
    parts = [p for p in PurePosixPath(cgroup_path).parts if p not in ("/", ".", "..")]
    if not mount.joinpath(*parts).is_dir():
        # A container without a cgroup namespace sees its host path here, but its own
        # cgroup is what is mounted at the root.
        return [mount]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def read_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> CpuQuota:
    """Find the CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 CFS files).

    Args:
        cgroup_root: where the cgroup hierarchies are mounted.
        proc_cgroup: the ``/proc/<pid>/cgroup`` file naming this process's cgroups.

    Returns:
        The tightest quota found; a missing or malformed file is noted, never raised.
    """
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        reason = f"{proc_cgroup} unreadable ({exc.strerror or exc}); no cgroup quota applied"
        return CpuQuota(None, None, notes=(reason,))
    checked: list[str] = []
    notes: list[str] = []
    best: tuple[float, str] | None = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, sep, cgroup_path = rest.partition(":")
        if not sep:
            notes.append(f"{proc_cgroup}: ignored malformed line {line!r}")
            continue
        reader: Callable[[Path], tuple[Path, float | None] | None]
        if hierarchy == "0" and not controllers:
            mount, reader = _v2_mount(cgroup_root), _v2_limit
        elif "cpu" in controllers.split(","):
            mount, reader = _v1_cpu_mount(cgroup_root), _v1_limit
        else:
            continue
        if mount is None:
            continue
        for directory in _cgroup_dirs(mount, cgroup_path):
            try:
                found = reader(directory)
            except _MalformedError as exc:
                notes.append(f"ignored {exc}")
                continue
            if found is None:
                continue
            path, cpus = found
            checked.append(str(path))
            if cpus is not None and (best is None or cpus < best[0]):
                best = (cpus, str(path))
    if best is None:
        where = ", ".join(checked) if checked else f"no quota files under {cgroup_root}"
        notes.append(f"no CPU quota ({where})")
        return CpuQuota(None, None, tuple(checked), tuple(notes))
    return CpuQuota(best[0], best[1], tuple(checked), tuple(notes))


def affinity_cpus() -> tuple[int, str]:
    """CPUs this process may run on, and which API said so."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0))), "os.sched_getaffinity"
    try:
        return max(1, len(psutil.Process().cpu_affinity() or [])), "psutil.cpu_affinity"
    except (AttributeError, psutil.Error, OSError):
        # macOS has no affinity API at all; the whole machine is the best answer left.
        return os.cpu_count() or 1, "os.cpu_count"


def usable_cpu_count(affinity: int, quota_cpus: float | None) -> int:
    """``min(affinity, ceil(quota))``, at least 1: a 1.5-CPU quota keeps two threads busy."""
    if quota_cpus is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota_cpus)))


def probe_gpus(*, import_torch: bool = False) -> tuple[int | None, str]:
    """Count CUDA devices through torch without creating a CUDA context.

    Args:
        import_torch: import torch if installed but not yet imported (``forexd hw``); the
            daemon leaves this off so that counting GPUs never costs a torch import.

    Returns:
        ``(count, how)``; ``count`` is ``None`` when the GPUs were not probed.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        if importlib.util.find_spec("torch") is None:
            return None, "not probed: torch is not installed"
        if not import_torch:
            return None, "not probed: torch is installed but not imported"
        try:
            torch = importlib.import_module("torch")
        except ImportError as exc:
            return None, f"not probed: import torch failed ({exc})"
    try:
        count = int(torch.cuda.device_count())
    except (RuntimeError, OSError) as exc:
        return None, f"not probed: torch.cuda.device_count() failed ({exc})"
    return count, "torch.cuda.device_count()"


@dataclass(frozen=True)
class Hardware:
    """What this process may use, as detected at start-up (see :func:`detect_hardware`)."""

    affinity_cpus: int
    affinity_source: str
    quota_cpus: float | None
    quota_path: str | None
    quota_checked: tuple[str, ...]
    quota_notes: tuple[str, ...]
    usable_cpus: int
    physical_cores: int | None
    logical_cores: int | None
    total_ram_bytes: int
    available_ram_bytes: int
    gpus: int | None
    gpu_probe: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        out = asdict(self)
        out["quota_checked"] = list(self.quota_checked)
        out["quota_notes"] = list(self.quota_notes)
        return out


def detect_hardware(
    *,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_SELF_CGROUP,
    import_torch: bool = False,
) -> Hardware:
    """Detect CPUs (affinity, cgroup quota), cores, RAM and, where torch is loaded, GPUs.

    Args:
        cgroup_root: where the cgroup hierarchies are mounted (tests pass a fake tree).
        proc_cgroup: the file naming this process's cgroups.
        import_torch: see :func:`probe_gpus`.
    """
    affinity, source = affinity_cpus()
    quota = read_cpu_quota(cgroup_root, proc_cgroup)
    memory = psutil.virtual_memory()
    gpus, gpu_probe = probe_gpus(import_torch=import_torch)
    return Hardware(
        affinity_cpus=affinity,
        affinity_source=source,
        quota_cpus=quota.cpus,
        quota_path=quota.path,
        quota_checked=quota.checked,
        quota_notes=quota.notes,
        usable_cpus=usable_cpu_count(affinity, quota.cpus),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
        total_ram_bytes=int(memory.total),
        available_ram_bytes=int(memory.available),
        gpus=gpus,
        gpu_probe=gpu_probe,
    )


# --------------------------------------------------------------------------- budget


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


# --------------------------------------------------------------------------- caps


class ThreadCapsError(RuntimeError):
    """``apply_thread_caps`` was called again with a different value (a programming error)."""


@dataclass(frozen=True)
class ThreadCaps:
    """What :func:`apply_thread_caps` set.

    Attributes:
        libraries: threadpoolctl's view after the cap: ``user_api``, ``internal_api``,
            ``prefix``, ``version``, ``num_threads`` and ``filepath`` per loaded library.
        torch_threads: ``torch.get_num_threads()`` after the cap; ``None``: torch not loaded.
        torch_interop_threads: ``torch.get_num_interop_threads()``; ``None`` likewise.
    """

    blas_threads: int
    env: Mapping[str, str]
    libraries: tuple[Mapping[str, Any], ...]
    torch_threads: int | None
    torch_interop_threads: int | None
    torch_note: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "blas_threads": self.blas_threads,
            "env": dict(self.env),
            "libraries": [dict(lib) for lib in self.libraries],
            "torch_threads": self.torch_threads,
            "torch_interop_threads": self.torch_interop_threads,
            "torch_note": self.torch_note,
        }


_LIBRARY_KEYS = ("user_api", "internal_api", "prefix", "version", "num_threads", "filepath")
_caps_lock = threading.Lock()
_applied_blas_threads: int | None = None
# threadpoolctl restores nothing unless asked, but holding the limiter makes the intent
# (a cap for the process's lifetime) explicit and keeps ``restore_original_limits`` at hand.
_limiter: Any = None
_interop_attempted = False


def thread_env(blas_threads: int) -> dict[str, str]:
    """The environment variables :func:`apply_thread_caps` sets, for child processes."""
    return dict.fromkeys(THREAD_ENV_VARS, str(blas_threads))


def _library_summary(info: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple({k: lib.get(k) for k in _LIBRARY_KEYS} for lib in info)


def _cap_torch(blas_threads: int) -> tuple[int | None, int | None, str]:
    global _interop_attempted  # noqa: PLW0603 - torch accepts the interop setting once
    torch = sys.modules.get("torch")
    if torch is None:
        return None, None, "torch not imported; it reads OMP_NUM_THREADS when it is"
    torch.set_num_threads(blas_threads)
    note = f"set_num_threads({blas_threads})"
    if not _interop_attempted:
        _interop_attempted = True
        try:
            torch.set_num_interop_threads(TORCH_INTEROP_THREADS)
            note += f", set_num_interop_threads({TORCH_INTEROP_THREADS})"
        except RuntimeError as exc:
            # torch refuses once inter-op work has started; the count is still reported.
            note += f"; interop threads left as they were ({exc})"
    return int(torch.get_num_threads()), int(torch.get_num_interop_threads()), note


def apply_thread_caps(blas_threads: int) -> ThreadCaps:
    """Cap BLAS, OpenMP and torch threads for the whole process, for its whole life.

    Sets the ``*_NUM_THREADS`` environment variables (read by child processes and by
    libraries loaded later), limits every loaded library through threadpoolctl, and, if
    torch is imported, ``torch.set_num_threads`` (and the inter-op pool, once). The caps are
    process-wide and never toggled per job. Calling again with the same value re-applies them
    to libraries loaded since (call it after importing torch); a different value raises.

    Args:
        blas_threads: threads per job, :attr:`ComputeBudget.blas_threads`.

    Raises:
        ValueError: ``blas_threads`` is below 1.
        ThreadCapsError: caps with a different value are already in effect.
    """
    global _applied_blas_threads, _limiter  # noqa: PLW0603 - one process-wide cap by design
    if blas_threads < 1:
        raise ValueError(f"blas_threads must be at least 1, got {blas_threads}")
    with _caps_lock:
        if _applied_blas_threads not in (None, blas_threads):
            raise ThreadCapsError(
                f"thread caps are already {_applied_blas_threads} per job; they are "
                f"process-wide and set once, so {blas_threads} cannot be applied now"
            )
        env = thread_env(blas_threads)
        os.environ.update(env)
        controller = ThreadpoolController()
        _limiter = controller.limit(limits=blas_threads)
        _applied_blas_threads = blas_threads
        torch_threads, interop, torch_note = _cap_torch(blas_threads)
        return ThreadCaps(
            blas_threads=blas_threads,
            env=env,
            libraries=_library_summary(controller.info()),
            torch_threads=torch_threads,
            torch_interop_threads=interop,
            torch_note=torch_note,
        )


# --------------------------------------------------------------------------- threads


def os_thread_count() -> int:
    """Threads of this process as the OS counts them (BLAS and OpenMP pools included)."""
    return psutil.Process().num_threads()


@dataclass(frozen=True)
class ThreadStats:
    """OS threads of the process: the last sample and the highest one seen."""

    now: int
    peak: int


class ThreadWatermark:
    """Tracks the OS thread count now and its peak; ``sample()`` is cheap and thread-safe."""

    def __init__(self, counter: Callable[[], int] = os_thread_count) -> None:
        """Take a first sample.

        Args:
            counter: returns the current thread count (tests pass a fake).
        """
        self._counter = counter
        self._lock = threading.Lock()
        self._now = 0
        self._peak = 0
        self.sample()

    def sample(self) -> ThreadStats:
        """Count threads now, raise the peak if needed, and return both."""
        count = self._counter()
        with self._lock:
            self._now = count
            self._peak = max(self._peak, count)
            return ThreadStats(self._now, self._peak)

    def stats(self) -> ThreadStats:
        """The last sample and the peak, without sampling."""
        with self._lock:
            return ThreadStats(self._now, self._peak)


# --------------------------------------------------------------------------- report


def hardware_report(hw: Hardware, budget: ComputeBudget) -> dict[str, Any]:
    """Everything ``forexd hw --json`` prints: hardware, budget and the caps it implies."""
    libraries = _library_summary(threadpool_info())
    return {
        "hardware": hw.to_dict(),
        "budget": budget.to_dict(),
        "thread_caps": {
            "blas_threads": budget.blas_threads,
            "env": thread_env(budget.blas_threads),
            "threadpoolctl_limit": budget.blas_threads,
            "torch_num_threads": budget.blas_threads,
            "torch_num_interop_threads": TORCH_INTEROP_THREADS,
            "applied_in_this_process": _applied_blas_threads,
            "loaded_libraries": [dict(lib) for lib in libraries],
        },
    }


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def _or_dash(value: object) -> str:
    return "—" if value is None else str(value)


def render_hardware_table(report: Mapping[str, Any]) -> Table:
    """The human form of :func:`hardware_report`, for ``forexd hw``."""
    hw, budget, caps = report["hardware"], report["budget"], report["thread_caps"]
    overridden = {k.removeprefix("compute.") for k in budget["overridden"]}

    def origin(key: str) -> str:
        return "config" if key in overridden else "derived"

    quota = "none" if hw["quota_cpus"] is None else f"{hw['quota_cpus']:g} CPUs"
    quota_where = hw["quota_path"] or "; ".join(hw["quota_notes"])
    loaded = ", ".join(
        f"{lib['internal_api']} ({lib['num_threads']} now)" for lib in caps["loaded_libraries"]
    )
    rows: list[tuple[str, str, str]] = [
        ("affinity CPUs", str(hw["affinity_cpus"]), hw["affinity_source"]),
        ("cgroup CPU quota", quota, quota_where),
        ("usable CPUs", str(budget["usable_cpus"]),
         f"config (detected {hw['usable_cpus']})" if "usable_cpus" in overridden
         else "min(affinity, ceil(quota))"),
        ("physical / logical cores", f"{_or_dash(hw['physical_cores'])} / "
         f"{_or_dash(hw['logical_cores'])}", "psutil"),
        ("RAM total / available", f"{_gib(hw['total_ram_bytes'])} / "
         f"{_gib(hw['available_ram_bytes'])}", "psutil"),
        ("GPUs", _or_dash(hw["gpus"]), hw["gpu_probe"]),
        ("reserve (event loop)", str(budget["reserve"]), origin("reserve_cpus")),
        ("CPU slots", str(budget["cpu_slots"]), f"{budget['idle_slots']} idle"),
        ("train workers", str(budget["train_workers"]), origin("train_workers")),
        ("BLAS threads per job", str(budget["blas_threads"]), origin("blas_threads")),
        ("max concurrent symbols", str(budget["max_concurrent_symbols"]),
         origin("max_concurrent_symbols")),
        ("thread env vars", f"= {caps['blas_threads']}", ", ".join(caps["env"])),
        ("torch threads / interop", f"{caps['torch_num_threads']} / "
         f"{caps['torch_num_interop_threads']}", "if torch is loaded"),
        ("loaded BLAS/OpenMP", loaded or "none yet", f"capped to {caps['threadpoolctl_limit']}"),
    ]  # fmt: skip
    table = Table(title="forexd compute budget")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("source / note", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
